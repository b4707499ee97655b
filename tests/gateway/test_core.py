"""The pure parts: token bounds, events against the contract, the spool's lines, streams
cut anywhere, keys, limits, routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.usage.events import (
    CallEvents,
    Served,
    call_event,
    event_time,
    instance_hours,
    wall_time,
)
from formarket.gateway.keys import KeyRecord, create_key, load_keys, revoke_key
from formarket.gateway.limits import Limits
from formarket.gateway.routes import Route, Routes, resolve
from formarket.usage.spool import encode_line, parse_segment
from formarket.gateway.sse import SseSplitter, event_data
from formarket.gateway.tokens import Measure, measure_choices, measure_request, settle
from formarket.usage.reader import WireEvent
from formarket.schemas.usage import ListingVersion, UsageEvent

SERVED = Served("dep-1", "acme", ("acme/helper", "0.3.0"), ("acme/llama-8b", "1.2.0"))
UTC = UTC


# --- tokens ---------------------------------------------------------------------------------


@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**4))
def test_the_estimate_never_exceeds_the_bound(text: int, ids: int, pieces: int) -> None:
    measured = Measure(text, ids, pieces)
    assert 0 <= measured.estimate <= measured.bound


def test_the_upstreams_counts_are_believed_only_when_possible() -> None:
    request = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 5}
    measured_in = measure_request("chat", request)
    assert measured_in == Measure(11, 0, 1)
    out = measure_choices([{"index": 0, "message": {"role": "assistant", "content": "hi there"}}])
    assert out == Measure(8, 0, 0)
    honest = settle(measured_in, out, 1, (4, 2))
    assert (honest.input_tokens, honest.output_tokens, honest.source) == (4, 2, "upstream")
    inflated = settle(measured_in, out, 1, (4000, 2))
    assert inflated.source == "measured"
    assert inflated.input_tokens <= measured_in.bound
    assert settle(measured_in, out, 1, None).source == "measured"


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
def test_the_text_of_choices_is_counted_in_utf8_bytes_wherever_it_nests(
    choices: list[object],
) -> None:
    assert measure_choices(choices).text_bytes == _text_bytes(choices)
    request = measure_request("completion", {"prompt": choices})
    assert request.text_bytes == _text_bytes(choices)


def test_token_ids_in_a_prompt_count_one_each() -> None:
    assert measure_request("completion", {"prompt": [[1, 2, 3], [4]]}).token_ids == 4
    assert measure_request("embedding", {"input": "abcd"}).text_bytes == 4


# --- events ---------------------------------------------------------------------------------


def test_a_call_event_is_the_contracts_shape() -> None:
    payload = call_event(
        event_id="b1-1",
        source="gateway/gw-1",
        moment=datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
        served=SERVED,
        input_tokens=3,
        output_tokens=4,
        duration_ms=12,
        outcome="ok",
        tokens_source="upstream",
    )
    event = UsageEvent.model_validate_json(payload)
    assert msgspec.json.decode(payload, type=WireEvent).id == "b1-1"
    assert event.time == datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert list(json.loads(payload)) == list(UsageEvent.model_fields)


@given(
    st.floats(min_value=1.5e9, max_value=2.5e9),
    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=30),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**7),
    st.sampled_from(["ok", "error", "rejected"]),
    st.sampled_from(["upstream", "measured"]),
    st.booleans(),
)
def test_call_events_made_from_a_template_are_call_event_s_bytes(
    wall: float,
    event_id: str,
    tokens_in: int,
    tokens_out: int,
    duration: int,
    outcome: Any,
    source: Any,
    agent: bool,
) -> None:
    served = SERVED if agent else Served("dep-2", "a%b", None, ("x/y", "1.0.0"))
    made = CallEvents("gateway/gw-1", served)(
        event_id=event_id,
        wall=wall,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        duration_ms=duration,
        outcome=outcome,
        tokens_source=source,
    )
    assert made == call_event(
        event_id=event_id,
        source="gateway/gw-1",
        moment=datetime.fromtimestamp(wall, UTC),
        served=served,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        duration_ms=duration,
        outcome=outcome,
        tokens_source=source,
    )


@given(st.floats(min_value=0, max_value=4e9) | st.integers(1, 4 * 10**9).map(lambda n: n - 5e-4))
def test_wall_time_rounds_as_fromtimestamp_does(seconds: float) -> None:
    assert wall_time(seconds) == event_time(datetime.fromtimestamp(seconds, UTC))


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.integers(0, 10 * 24 * 3600),
)
def test_instance_hours_cut_at_hours_add_up_and_are_the_contracts(
    start: datetime, seconds: int
) -> None:
    begin = start.replace(tzinfo=UTC)
    end = begin + timedelta(seconds=seconds)
    events = [
        UsageEvent.model_validate_json(e)
        for e in instance_hours(source="farm/meter-1", served=SERVED, start=begin, end=end)
    ]
    whole = int(end.timestamp()) - int(begin.timestamp())
    assert sum(e.data.instance_seconds for e in events) == whole
    for event in events:
        assert 0 < event.data.instance_seconds <= 3600
        last = event.time + timedelta(seconds=event.data.instance_seconds - 1)
        assert (last.year, last.month, last.day, last.hour) == (
            event.time.year,
            event.time.month,
            event.time.day,
            event.time.hour,
        )
    again = instance_hours(source="farm/meter-1", served=SERVED, start=begin, end=end)
    assert [json.loads(e)["id"] for e in again] == [e.id for e in events]


def test_instance_hours_refuse_time_running_backwards() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="before"):
        instance_hours(source="farm/m", served=SERVED, start=now, end=now - timedelta(1))


# --- the spool's lines ---------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1).filter(lambda b: b"\n" not in b), max_size=20), st.data())
def test_segments_read_back_what_was_written_and_catch_damage(
    payloads: list[bytes], data: st.DataObject
) -> None:
    segment = b"".join(encode_line(p) for p in payloads)
    read = parse_segment(segment)
    assert [p for _, p in read.events] == payloads
    assert not read.problems
    if segment:
        cut = data.draw(st.integers(0, len(segment) - 1))
        torn = parse_segment(segment[:cut])
        assert len(torn.events) + len(torn.problems) <= len(payloads)
        assert all(p in payloads for _, p in torn.events)
        position = data.draw(st.integers(0, len(segment) - 1))
        flipped = bytearray(segment)
        flipped[position] ^= data.draw(st.integers(1, 255))
        damaged = parse_segment(bytes(flipped))
        # A damaged line is never taken for an event it was not.
        assert all(p in payloads for _, p in damaged.events)
        assert len(damaged.events) < len(payloads) or damaged.problems


def test_a_checksum_whose_letters_changed_case_is_damage() -> None:
    # crc32(b"\x00\x00") is 41d912ff: hex that still parses once its case bit flips.
    line = encode_line(b"\x00\x00")
    assert line[:8] == b"41d912ff"
    damaged = line[:2] + line[2:3].upper() + line[3:]
    read = parse_segment(damaged)
    assert not read.events
    assert read.problems[0].reason.startswith("checksum mismatch")


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
    found = resolve(routes, "acme", "acme/llama-8b")
    assert isinstance(found, Route)
    assert found.deployment == "a"
    assert resolve(routes, "acme", "b") == []
    with pytest.raises(ValueError, match="http"):
        Route(deployment="c", endpoint="ftp://h", account="acme", model=model)
