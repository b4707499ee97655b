"""The gateway's OpenAPI 3.1 document, served at /openapi.json.

Request bodies are generated from the request types the gateway checks (`wire`), so the
document cannot promise what the gateway refuses. Responses are described as far as the
gateway guarantees them: errors exactly (they are the gateway's own), answers by the fields
OpenAI's clients rely on (the rest is the deployment's).
"""

from __future__ import annotations

from typing import Any

import msgspec

from formarket import __version__
from formarket.gateway.wire import ChatRequest, CompletionRequest, EmbeddingRequest

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_LISTING_REF = {
    "anyOf": [
        {
            "type": "object",
            "required": ["id", "version"],
            "properties": {"id": {"type": "string"}, "version": {"type": "string"}},
        },
        {"type": "null"},
    ]
}
_MODEL = {
    "type": "object",
    "description": "A deployment the caller may call; its id is what `model` names.",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "formarket": {
            "type": "object",
            "properties": {"agent": _LISTING_REF, "model": _LISTING_REF},
        },
    },
}
_MODEL_LIST = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
    },
}
_USAGE = {
    "type": "object",
    "description": "What the call was billed, counted by the gateway, and what that cost (the"
    " `X-Formarket-Call` header names the call's usage event: its receipt).",
    "required": ["prompt_tokens", "total_tokens", "cost", "currency"],
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": {"type": "string", "description": "A decimal amount, such as 0.0000215."},
        "currency": {"type": "string", "description": "ISO 4217, such as USD."},
    },
}
_COMPLETION = {
    "type": "object",
    "description": "The deployment's answer, trimmed to what the request allowed, with the"
    " usage it was billed.",
    "required": ["choices", "usage"],
    "properties": {"choices": {"type": "array"}, "usage": _USAGE},
}
_EMBEDDINGS = {
    "type": "object",
    "description": "The deployment's answer, with the usage it was billed.",
    "required": ["data", "usage"],
    "properties": {"data": {"type": "array"}, "usage": _USAGE},
}
# Every refusal the gateway itself makes, by status.
_REFUSALS = {
    "400": "The body is not JSON, or a field has the wrong type or value.",
    "401": "No API key, or not a valid one.",
    "404": "No such deployment among the caller's, or the listing is ambiguous.",
    "405": "The method is not allowed on this path.",
    "413": "The body is larger than the gateway accepts.",
    "415": "The body is not sent as application/json.",
    "422": "The deployment refused the request.",
    "409": "The deployment refused the request.",
    "429": "Over the key's rate limit or daily quota (see Retry-After), or the account's"
    " prepaid balance cannot cover the call (insufficient_quota).",
    "502": "The deployment failed or could not be reached.",
    "503": "Usage cannot be metered, or prepaid credit checked, so the call is refused.",
    "504": "The deployment did not answer in time.",
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {
        status: {
            "description": _REFUSALS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: a chunk's JSON, or `[DONE]` at the end.",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    "required": ["data"],
}


def _post(summary: str, request: str, answer: str, *, streams: bool) -> dict[str, Any]:
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{answer}"}}
    }
    if streams:
        # Before OpenAPI 3.2 (`itemSchema`), the schema of an event stream describes one event.
        content["text/event-stream"] = {
            "schema": _SSE_EVENT,
            "description": "With `stream: true`: the deployment's server-sent events.",
        }
    return {
        "post": {
            "summary": summary,
            "security": [{"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}
                },
            },
            "responses": {
                "200": {"description": "The deployment's answer.", "content": content},
                **_errors(
                    "400",
                    "401",
                    "404",
                    "405",
                    "409",
                    "413",
                    "415",
                    "422",
                    "429",
                    "502",
                    "503",
                    "504",
                ),
            },
        }
    }


def openapi_document() -> bytes:
    _, schemas = msgspec.json.schema_components(
        [ChatRequest, CompletionRequest, EmbeddingRequest],
        ref_template="#/components/schemas/{name}",
    )
    schemas.update(
        Error=_ERROR,
        Model=_MODEL,
        ModelList=_MODEL_LIST,
        Completion=_COMPLETION,
        Embeddings=_EMBEDDINGS,
    )
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "formarket gateway",
            "version": __version__,
            "description": "OpenAI-compatible access to the caller's formarket deployments."
            " Every call that reaches a deployment is metered.",
        },
        "paths": {
            "/v1/models": {
                "get": {
                    "summary": "The deployments the caller may use",
                    "security": [{"apiKey": []}],
                    "responses": {
                        "200": {
                            "description": "Them.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ModelList"}
                                }
                            },
                        },
                        **_errors("401", "405"),
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "One deployment the caller may use",
                    "security": [{"apiKey": []}],
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "It.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Model"}
                                }
                            },
                        },
                        **_errors("401", "404", "405"),
                    },
                }
            },
            "/v1/chat/completions": _post(
                "A chat completion", "ChatRequest", "Completion", streams=True
            ),
            "/v1/completions": _post(
                "A text completion", "CompletionRequest", "Completion", streams=True
            ),
            "/v1/embeddings": _post("Embeddings", "EmbeddingRequest", "Embeddings", streams=False),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
    return msgspec.json.encode(document)
