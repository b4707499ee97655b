"""The smoke test's request and its judgement of answers, as values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from formarket.registry.smoke import compile_pattern, judge, lookup, smoke_call
from formarket.schemas.listing import ModelListing
from formarket.schemas.smoke import MAX_TEST_BODY, SmokeTest

_MODEL: dict[str, Any] = {
    "id": "acme/echo",
    "name": "Echo",
    "version": "1.0.0",
    "description": "An echo model for tests.",
    "license": "MIT",
    "task": "chat",
    "resources": {"minimum": {"vcpus": 1, "memory_mib": 512, "disk_gib": 5}},
    "pricing": {"model": "free"},
    "monetization": {"metered": ["requests"], "royalty_percent": "0"},
}
_ANSWER = {
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "You said: ping"}}],
    "usage": {"total_tokens": 3},
}


def _test(**fields: Any) -> SmokeTest:
    return SmokeTest.model_validate(fields)


def test_a_chat_model_is_called_with_a_chat_request_by_default() -> None:
    call = smoke_call(ModelListing.model_validate(_MODEL), _test())
    assert (call.method, call.path, call.port) == ("POST", "/v1/chat/completions", None)
    assert json.loads(call.body or b"")["messages"] == [{"role": "user", "content": "ping"}]


def test_an_embeddings_model_is_called_on_its_own_path() -> None:
    listing = ModelListing.model_validate({**_MODEL, "task": "embeddings"})
    call = smoke_call(listing, _test())
    assert call.path == "/v1/embeddings"
    assert json.loads(call.body or b"") == {"model": "acme/echo", "input": "ping"}


def test_a_get_sends_no_body_and_a_test_s_own_path_and_body_win() -> None:
    listing = ModelListing.model_validate(_MODEL)
    assert smoke_call(listing, _test(method="GET", path="/health")).body is None
    call = smoke_call(listing, _test(path="/v1/x", body={"a": 1}, port=9000))
    assert (call.path, call.body, call.port) == ("/v1/x", b'{"a": 1}', 9000)


def test_an_answer_of_the_expected_shape_passes() -> None:
    test = _test(
        expect={
            "status": 200,
            "present": ["choices.0.message.content", "usage"],
            "equals": {"object": "chat.completion", "choices.0.message.role": "assistant"},
            "pattern": r"You said: \w+",
        }
    )
    assert judge(test, 200, json.dumps(_ANSWER).encode()) == []


def test_every_difference_is_reported_with_what_was_expected_and_what_came() -> None:
    test = _test(
        expect={
            "status": 200,
            "present": ["choices.1", "nothing.here"],
            "equals": {"object": "chat", "usage.total_tokens": True, "missing": 1},
            "pattern": "^never$",
        }
    )
    problems = judge(test, 500, json.dumps(_ANSWER).encode())
    assert problems == [
        "status: expected 200, got 500",
        "choices.1: expected to be present, missing",
        "nothing.here: expected to be present, missing",
        'object: expected "chat", got "chat.completion"',
        "usage.total_tokens: expected true, got 3",
        "missing: expected 1, missing",
        "body: expected a match of /^never$/, none found",
    ]


def test_garbage_where_json_is_expected_is_a_finding_not_a_crash() -> None:
    test = _test(expect={"present": ["choices"]})
    assert judge(test, 200, b"\xff\xfe garbage {") == [
        "body: expected JSON, got something JSON cannot read"
    ]


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"(?=x)y", r"(?<!x)y", "((a{100}){100}){100}", "[z-a]", "(unclosed"],
)
def test_patterns_that_need_backtracking_or_huge_programs_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_pattern(pattern)


def test_a_pattern_meant_to_backtrack_matches_a_long_answer_in_linear_time() -> None:
    # (a+)+$ against a's and a final b takes exponential time in a backtracking engine.
    answer = "a" * 200_000 + "b"
    assert compile_pattern("^(a+)+$").search(answer) is None
    assert compile_pattern("^(a+)+b$").search(answer) is not None


def test_a_body_over_the_limit_and_a_get_with_a_body_are_refused() -> None:
    with pytest.raises(ValidationError, match="limit"):
        _test(body={"text": "x" * MAX_TEST_BODY})
    with pytest.raises(ValidationError, match="GET"):
        _test(method="GET", body={"a": 1})


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", "a b", "", "a." * 20 + "a"])
def test_only_dotted_paths_are_accepted(path: str) -> None:
    with pytest.raises(ValidationError):
        _test(expect={"present": [path]})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=2), inner),
    max_leaves=10,
)


@given(_JSON, st.lists(st.sampled_from(["a", "b", "0", "1", "ab"]), min_size=1, max_size=4))
def test_lookup_finds_exactly_what_walking_the_document_finds(doc: Any, parts: list[str]) -> None:
    here: Any = doc
    for part in parts:
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            here = "<none>"
            break
    found = lookup(doc, ".".join(parts))
    assert (found if found is not lookup({}, "x") else "<none>") == here


@given(st.binary(max_size=300), st.integers(100, 599))
def test_any_answer_is_judged_without_raising(body: bytes, status: int) -> None:
    test = _test(expect={"present": ["a.0"], "equals": {"b": 1}, "pattern": "x+y"})
    problems = judge(test, status, body)
    assert all(isinstance(p, str) for p in problems)
    assert (status == 200) == (not any(p.startswith("status") for p in problems))
