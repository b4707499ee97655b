"""A listing's smoke test: one request to its running VM and the shape the answer must have.

`formarket test` builds the listing, boots it, sends this request and judges the answer; the
pull-request workflow runs it for every listing a pull request changes. The pattern is RE2
syntax (linear-time matching), checked when the listing is validated (REG035).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from formarket.schemas._base import Document

__all__ = ["MAX_TEST_BODY", "DottedPath", "SmokeExpect", "SmokeTest"]

# A smoke test is one small request; a bigger body is a mistake or an attempt on the runner.
MAX_TEST_BODY = 64 * 1024
DottedPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,15}$"),
    Field(description="Names and list indexes joined by dots, such as `choices.0.message`."),
]


class SmokeExpect(Document):
    """What the answer must be: its status, fields of its JSON body, a pattern its body matches."""

    status: int = Field(default=200, ge=100, le=599, description="The HTTP status expected.")
    present: tuple[DottedPath, ...] = Field(
        default=(),
        max_length=32,
        description="Dotted paths into the JSON answer that must exist, such as"
        " `choices.0.message.content` (a number indexes a list).",
    )
    equals: dict[DottedPath, Any] = Field(
        default_factory=dict,
        max_length=32,
        description="Dotted paths into the JSON answer and the value each must have.",
    )
    pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="An RE2 regular expression the answer's body must contain a match of"
        " (searched, not anchored; RE2 matches in linear time, so no pattern can hang the run).",
    )


class SmokeTest(Document):
    """One request to the listing's running VM and the answer expected.

    The request goes to the Formfile's first EXPOSEd port unless `port` names another. Without
    `path`, a model is called as its task calls it (`/v1/embeddings` for embeddings,
    `/v1/rerank` for reranking, `/v1/chat/completions` otherwise) and so is an agent (chat
    completions).
    """

    method: Literal["GET", "POST"] = "POST"
    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}$",
        description="The request's path (and query), starting with /.",
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="A port the Formfile EXPOSEs."
    )
    body: dict[str, Any] | None = Field(
        default=None,
        description="The JSON body of a POST; by default a one-message request of the call.",
    )
    expect: SmokeExpect = Field(default_factory=SmokeExpect)
    timeout_seconds: int = Field(
        default=60,
        ge=1,
        le=600,
        description="How long the answer may take once the VM has booted.",
    )

    @model_validator(mode="after")
    def _body_small(self) -> SmokeTest:
        if self.body is not None:
            if self.method == "GET":
                raise ValueError("a GET request has no body; use method: POST")
            size = len(json.dumps(self.body, separators=(",", ":")).encode())
            if size > MAX_TEST_BODY:
                raise ValueError(f"the body is {size} bytes as JSON; the limit is {MAX_TEST_BODY}")
        return self
