"""OpenAI's wire format, as far as the gateway reads it: the requests it checks before it
forwards them, and the error shape of every refusal.

The request types name only the fields the gateway relies on (the model, streaming, the text
it meters) and let every other field through untouched, so a client may use any parameter
the deployment's server understands. They are also the request bodies of the OpenAPI document
(`formarket.gateway.openapi`): what is documented is what is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from formarket.gateway.tokens import Kind

__all__ = [
    "ENDPOINTS",
    "ApiError",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "Request",
    "error_body",
]

_ENCODE = msgspec.json.Encoder().encode

ModelName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=256,
        description="A deployment id, or the id of a listing that exactly one of the caller's"
        " deployments serves.",
    ),
]
TokenId = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Prompt = Annotated[
    str | Annotated[list[str | TokenId | list[TokenId]], Meta(min_length=1, max_length=2048)],
    Meta(description="Text, texts, or token ids."),
]


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


class ChatMessage(msgspec.Struct, frozen=True):
    role: Annotated[str, Meta(min_length=1, max_length=64)]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(msgspec.Struct, frozen=True):
    """A chat completion; every field not named here is passed through to the deployment."""

    model: ModelName
    messages: Annotated[list[ChatMessage], Meta(min_length=1, max_length=4096)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] = 1


class CompletionRequest(msgspec.Struct, frozen=True):
    """A text completion; every field not named here is passed through to the deployment."""

    model: ModelName
    prompt: Prompt
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] = 1


class EmbeddingRequest(msgspec.Struct, frozen=True):
    """Embeddings of one or more inputs; other fields are passed through to the deployment."""

    model: ModelName
    input: Prompt
    encoding_format: Literal["float", "base64"] = "float"


Request = ChatRequest | CompletionRequest | EmbeddingRequest

# path -> (what is metered, the request's type); the deployment is called on the same path
ENDPOINTS: dict[str, tuple[Kind, type[Request]]] = {
    "/v1/chat/completions": ("chat", ChatRequest),
    "/v1/completions": ("completion", CompletionRequest),
    "/v1/embeddings": ("embedding", EmbeddingRequest),
}


class ApiError(Exception):
    """A refusal, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = tuple(headers)

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None, code: str | None) -> bytes:
    return _ENCODE({"error": {"message": message, "type": type, "param": param, "code": code}})
