"""A listing's smoke test as values: the request it makes and the judgement of an answer.

Pure: the builder's driver (formarket.builder.smoke) boots the VM and sends the request; this
module says what to send and whether what came back is what the listing promised. The check
compiles the test's pattern here too, so a pattern RE2 refuses is found at the pull request
(REG035), not when a VM is already running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import re2

from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.smoke import SmokeTest

__all__ = [
    "MAX_PATTERN_MEMORY",
    "SmokeCall",
    "compile_pattern",
    "judge",
    "lookup",
    "smoke_call",
]

# RE2 builds a program whose size grows with the pattern (`a{1000}` is a thousand states); a
# budget keeps a pattern written to exhaust the runner's memory from compiling at all.
MAX_PATTERN_MEMORY = 8 * 1024 * 1024
_MISSING = object()


@dataclass(frozen=True, slots=True)
class SmokeCall:
    """The HTTP request a test makes, with its defaults filled in."""

    method: str
    path: str
    port: int | None
    body: bytes | None


def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """The pattern compiled by RE2; ValueError with RE2's reason when it refuses it."""
    options = re2.Options()
    options.max_mem = MAX_PATTERN_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(text) from exc


def _natural(listing: ModelListing | AgentListing) -> tuple[str, dict[str, Any]]:
    """The call a listing of this kind answers first: its path and a one-line request."""
    if isinstance(listing, ModelListing) and listing.task == "embeddings":
        return "/v1/embeddings", {"model": listing.id, "input": "ping"}
    if isinstance(listing, ModelListing) and listing.task == "reranking":
        return "/v1/rerank", {"model": listing.id, "query": "ping", "documents": ["ping", "pong"]}
    return "/v1/chat/completions", {
        "model": listing.id,
        "messages": [{"role": "user", "content": "ping"}],
    }


def smoke_call(listing: ModelListing | AgentListing, test: SmokeTest) -> SmokeCall:
    """The request of `test`: its own path and body, or the listing kind's natural call."""
    path, body = _natural(listing)
    if test.path is not None:
        path = test.path
    if test.method == "GET":
        return SmokeCall("GET", path, test.port, None)
    chosen = test.body if test.body is not None else body
    return SmokeCall("POST", path, test.port, json.dumps(chosen).encode())


def lookup(document: Any, dotted: str) -> Any:
    """The value at a dotted path (`choices.0.message`), or `_MISSING` when there is none."""
    here = document
    for part in dotted.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            return _MISSING
    return here


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def judge(test: SmokeTest, status: int, body: bytes) -> list[str]:
    """What is wrong with an answer, one line each; empty when it is what the test expects."""
    expect = test.expect
    problems: list[str] = []
    if status != expect.status:
        problems.append(f"status: expected {expect.status}, got {status}")
    if expect.present or expect.equals:
        try:
            document = json.loads(body)
        except ValueError:
            problems.append("body: expected JSON, got something JSON cannot read")
            document = _MISSING
        if document is not _MISSING:
            for path in expect.present:
                if lookup(document, path) is _MISSING:
                    problems.append(f"{path}: expected to be present, missing")
            for path, wanted in expect.equals.items():
                found = lookup(document, path)
                if found is _MISSING:
                    problems.append(f"{path}: expected {_short(wanted)}, missing")
                elif found != wanted or isinstance(found, bool) != isinstance(wanted, bool):
                    problems.append(f"{path}: expected {_short(wanted)}, got {_short(found)}")
    if expect.pattern is not None:
        text = body.decode("utf-8", "replace")
        if compile_pattern(expect.pattern).search(text) is None:
            problems.append(f"body: expected a match of /{expect.pattern}/, none found")
    return problems
