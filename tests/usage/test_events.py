"""Events as bytes: every event built is the contract's shape (`UsageEvent`) and reads back
through the usage reader; the per-call template makes `call_event`'s bytes exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.schemas.usage import UsageEvent
from formarket.usage.events import (
    CallEvents,
    Served,
    call_event,
    event_time,
    instance_hours,
    wall_time,
)
from formarket.usage.wire import WireEvent, validate_line

SERVED = Served("dep-1", "acme", ("acme/helper", "0.3.0"), ("acme/llama-8b", "1.2.0"))


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
    decoded = validate_line(payload)
    assert isinstance(decoded, WireEvent), decoded
    assert decoded.id == "b1-1"
    assert event.time == datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert list(json.loads(payload)) == list(UsageEvent.model_fields)


@given(
    st.floats(min_value=1.5e9, max_value=2.5e9),
    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=30),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**7),
    st.sampled_from(["ok", "error", "rejected"]),
    st.sampled_from(["upstream", "measured", "estimate", "sha256:" + "ab" * 32]),
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
    made = instance_hours(source="farm/meter-1", served=SERVED, start=begin, end=end)
    assert all(isinstance(validate_line(e), WireEvent) for e in made)
    events = [UsageEvent.model_validate_json(e) for e in made]
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
