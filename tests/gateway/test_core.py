"""The pure parts: token bounds, streams cut anywhere, keys, limits, routes. (Events and the
spool's lines are tested with formarket.usage, in tests/usage.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.gateway.keys import KeyRecord, create_key, load_keys, revoke_key
from formarket.gateway.limits import Limits
from formarket.gateway.routes import Route, Routes, resolve
from formarket.gateway.sse import SseSplitter, event_data
from formarket.gateway.tokens import ESTIMATE, Trimmer, measure_request, settle
from formarket.schemas.usage import ListingVersion

# --- tokens ---------------------------------------------------------------------------------


def test_the_upstreams_counts_are_believed_only_when_possible() -> None:
    request = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 5}
    measured_in = measure_request("chat", request, ESTIMATE)
    assert (measured_in.text_bytes, measured_in.pieces) == (11, 1)
    assert measured_in.tokens == 3 + ESTIMATE.chat_overhead(1)
    trimmer = Trimmer(ESTIMATE, "chat", max_tokens=5)
    trimmer.response({"choices": [{"index": 0, "message": {"content": "hi there"}}]})
    assert trimmer.output_tokens == 2
    honest = settle(ESTIMATE, measured_in, trimmer.output_tokens, (4, 2))
    assert (honest.input_tokens, honest.output_tokens, honest.source) == (4, 2, "upstream")
    inflated = settle(ESTIMATE, measured_in, trimmer.output_tokens, (4000, 2))
    assert inflated.source == "estimate"
    assert inflated.input_tokens == measured_in.tokens
    # Output above the count of what was delivered is never believed.
    assert settle(ESTIMATE, measured_in, 2, (4, 3)).source == "estimate"
    assert settle(ESTIMATE, measured_in, 2, None).source == "estimate"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["content", "role", "index", "text", "x"]), inner)
    ),
    max_leaves=20,
)


def _text_bytes(value: object) -> int:
    """The reference: UTF-8 bytes of every string, except under keys that are protocol."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_text_bytes(v) for k, v in value.items() if k not in ("role", "index"))
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    return 0


@given(st.lists(JSON, max_size=4))
def test_the_text_of_a_prompt_is_counted_in_utf8_bytes_wherever_it_nests(
    choices: list[object],
) -> None:
    request = measure_request("completion", {"prompt": choices}, ESTIMATE)
    assert request.text_bytes == _text_bytes(choices)


class _Counted:
    """A counter of its own (one token per character), beside the estimate."""

    method = "sha256:test"

    def text(self, text: str) -> int:
        return len(text)

    def chat_overhead(self, messages: int) -> int:
        return 5 * messages + 1 if messages else 0

    def cut_hint(self, text: str, limit: int) -> int | None:
        return None


# Plain messages (a role and text), and ones that are nearly so.
MESSAGE = st.fixed_dictionaries(
    {"role": st.text(max_size=3), "content": st.text() | st.lists(st.text(), max_size=2)},
    optional={"name": st.text(min_size=1) | st.integers(), "tool_call_id": st.text()},
)


@given(st.lists(MESSAGE | MESSAGE | JSON, max_size=5), st.booleans())
def test_a_chat_is_measured_the_same_whether_its_messages_are_plain_or_not(
    messages: list[object], counted: bool
) -> None:
    # An empty `tools` list adds no text, and takes the request down the general walk.
    counter = _Counted() if counted else ESTIMATE
    plain = measure_request("chat", {"messages": messages}, counter)
    walked = measure_request("chat", {"messages": messages, "tools": []}, counter)
    assert plain == walked


def test_token_ids_in_a_prompt_count_one_each() -> None:
    assert measure_request("completion", {"prompt": [[1, 2, 3], [4]]}, ESTIMATE).token_ids == 4
    assert measure_request("embedding", {"input": "abcd"}, ESTIMATE).text_bytes == 4


# --- streams --------------------------------------------------------------------------------


@given(
    st.lists(st.text(alphabet='ab {}:"', min_size=1, max_size=20), min_size=1, max_size=8),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(1, 50), min_size=1, max_size=30),
)
def test_a_stream_cut_anywhere_gives_the_same_events(
    datas: list[str], newline: bytes, cuts: list[int]
) -> None:
    stream = b"".join(b"data: " + d.encode() + newline + newline for d in datas)
    splitter = SseSplitter()
    events: list[bytes] = []
    at = 0
    for size in cuts:
        events += splitter.feed(stream[at : at + size])
        at += size
    events += splitter.feed(stream[at:])
    assert splitter.rest() == b""
    assert [event_data(e) for e in events] == [d.encode() for d in datas]


def test_comments_have_no_data() -> None:
    assert event_data(b": keep-alive") is None
    assert event_data(b"data: a\ndata: b") == b"a\nb"


# --- keys, limits, routes ------------------------------------------------------------------


def test_keys_are_stored_hashed_and_can_be_revoked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, record = create_key(path, "acme")
    assert key not in path.read_text()
    store = load_keys(path)
    assert store.authenticate(key) == record
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    revoke_key(path, record.id)
    assert load_keys(path).authenticate(key) is None


def test_rates_refill_and_quotas_reset_at_midnight() -> None:
    key = KeyRecord("k", "acme", "0" * 64, "", rate_per_second=2, burst=2, requests_per_day=3)
    limits = Limits()
    day = 86400.0 * 20000
    assert limits.admit(key, 0.0, day) is None
    assert limits.admit(key, 0.0, day) is None
    refused = limits.admit(key, 0.0, day)
    assert refused is not None
    assert refused.code == "rate_limit_exceeded"
    assert limits.admit(key, 0.5, day) is None
    over = limits.admit(key, 10.0, day + 1)
    assert over is not None
    assert over.code == "insufficient_quota"
    assert limits.admit(key, 20.0, day + 86400) is None
    restored = Limits()
    restored.load(limits.dump())
    assert restored.admit(key, 0.0, day + 86400) is None


def test_a_listing_resolves_only_among_the_callers_deployments() -> None:
    model = ListingVersion(id="acme/llama-8b", version="1.2.0")
    routes = Routes.of(
        [
            Route(deployment="a", endpoint="http://h:1", account="acme", model=model),
            Route(deployment="b", endpoint="http://h:1", account="zeta", model=model),
        ]
    )
    found = resolve(routes, {"acme"}, "acme/llama-8b")
    assert isinstance(found, Route)
    assert found.deployment == "a"
    assert resolve(routes, {"acme"}, "b") == []
    with pytest.raises(ValueError, match="http"):
        Route(deployment="c", endpoint="ftp://h", account="acme", model=model)
