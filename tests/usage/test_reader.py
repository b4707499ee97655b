"""The fast reader and the contract agree: `UsageEvent` (pydantic) and the msgspec reader
accept and refuse the same documents, and the hot loop refuses what `validate_line` refuses."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from formarket.schemas.usage import UsageEvent
from formarket.usage.files import month_index, parse_usage_path, usage_path
from formarket.usage.reader import Rules, ScanSpec, scan_file
from formarket.usage.wire import WireEvent, validate_line
from tests.usage.helpers import call, gz, hours

AGREE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TEXT = st.one_of(
    st.text(max_size=12),
    st.text("abcXYZ019-._:@/ \n", max_size=140),
    st.sampled_from(["", "a", "1.0.0", "v1", "acme/chat", "Acme/Chat", "gw-1", "x" * 129]),
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
    st.builds(list),
    st.builds(dict),
    st.sampled_from(
        [
            "2026-03-10T12:00:00Z",
            "2026-03-10T12:00:00+00:00",
            "2026-03-10T12:00:00.123456Z",
            "2026-03-10 12:00:00Z",
            "2026-03-10t12:00:00z",
            "2026-03-10T12:00:00+01:00",
            "2026-03-10T12:00:00",
            "2026-02-30T12:00:00Z",
            "ok",
            "error",
            "measured",
            "dev.formarket.usage.instance-hours",
        ]
    ),
)
_FIELDS = (
    ("specversion",),
    ("id",),
    ("source",),
    ("type",),
    ("time",),
    ("subject",),
    ("datacontenttype",),
    ("data", "account"),
    ("data", "agent"),
    ("data", "model"),
    ("data", "model", "id"),
    ("data", "model", "version"),
    ("data", "input_tokens"),
    ("data", "output_tokens"),
    ("data", "requests"),
    ("data", "duration_ms"),
    ("data", "outcome"),
    ("data", "tokens_source"),
    ("data", "instance_seconds"),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event, then a few changes that may or may not break it."""
    if draw(st.booleans()):
        event = call(
            draw(st.sampled_from(["c-1", "gw-1-20260310-000000001", "A.b:c-9"])),
            model=("acme/chat", draw(st.sampled_from(["1.0.0", "2.1.0-rc.1+build.5"]))),
            agent=draw(st.sampled_from([None, ("zeta/helper", "0.1.0")])),
            input_tokens=draw(st.integers(0, 10**12)),
        )
    else:
        event = hours(
            "h-1",
            model=("acme/chat", "1.0.0"),
            seconds=draw(st.integers(1, 10**6)),
            time="2026-03-10T01:00:00Z",
        )
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(_FIELDS))
        target: Any = event
        for key in where[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        action = draw(st.sampled_from(("set", "set", "delete", "add")))
        if action == "delete":
            target.pop(where[-1], None)
        elif action == "add":
            target[draw(st.sampled_from(["extra", "price", "ID"]))] = draw(_VALUES)
        else:
            target[where[-1]] = draw(_VALUES)
    return event


def _contract(raw: bytes) -> UsageEvent | None:
    try:
        return UsageEvent.model_validate_json(raw)
    except ValidationError:
        return None


@AGREE
@given(documents())
def test_the_reader_and_the_contract_accept_the_same_events(document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    contract = _contract(raw)
    fast = validate_line(raw)
    assert (contract is not None) == isinstance(fast, WireEvent), (contract, fast)
    if contract is not None and isinstance(fast, WireEvent):
        assert fast.id == contract.id
        assert fast.source == contract.source
        assert fast.time == contract.time
        assert fast.data.input_tokens == contract.data.input_tokens
        assert fast.data.instance_seconds == contract.data.instance_seconds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_hot_loop_refuses_what_validate_line_refuses(document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    fast = validate_line(raw)
    source = document.get("source")
    assume(isinstance(source, str))
    file = parse_usage_path(f"registry/usage/2026/03/10/{source}-000001.jsonl.gz")
    assume(file is not None)
    assert file is not None
    known = frozenset(
        {("acme/chat", "1.0.0"), ("acme/chat", "2.1.0-rc.1+build.5"), ("zeta/helper", "0.1.0")}
    )
    rules = Rules(
        month_index("2026-03"),
        0,
        known,
        timedelta(days=3650),
        frozenset(listing for listing, _ in known),
    )
    scan = scan_file(0, file, gz([raw]), False, ScanSpec(rules, None))
    if isinstance(fast, WireEvent):
        listed = all(
            (ref.id, ref.version) in known for ref in (fast.data.agent, fast.data.model) if ref
        )
        data = fast.data
        quantities = (data.requests, data.input_tokens, data.output_tokens, data.instance_seconds)
        # A valid line above what a gateway can produce is set aside by the terms' ceilings.
        within = all(q <= c for q, c in zip(quantities, rules.ceilings, strict=True))
        assert scan.events == (1 if listed and within else 0)
        if not within:
            assert [s.code for s in scan.set_aside] == ["USG018"]
    else:
        assert scan.events == 0
        assert len(scan.set_aside) == 1


@settings(max_examples=100, deadline=None)
@given(
    st.dates().map(str),
    st.sampled_from(["gateway/gw-1", "farm/meter-1", "a/b"]),
    st.integers(0, 10**12 - 1),
)
def test_usage_paths_round_trip(day: str, source: str, seq: int) -> None:
    from datetime import date

    when = date.fromisoformat(day)
    path = usage_path(when, source, seq)
    parsed = parse_usage_path(path)
    assert parsed is not None
    assert (parsed.day, parsed.source, parsed.seq) == (when, source, seq)


def test_a_call_whose_tokens_source_is_no_pattern_of_it_is_set_aside() -> None:
    # Found by the property above: the loop checked a call's tokens_source only when other
    # things about the event called for it, and counted a line validate_line refuses.
    event = call("c-1", model=("acme/chat", "1.0.0"))
    event["data"]["tokens_source"] = "0"
    raw = json.dumps(event).encode()
    assert isinstance(validate_line(raw), str)
    file = parse_usage_path("registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz")
    assert file is not None
    known = frozenset({("acme/chat", "1.0.0")})
    rules = Rules(month_index("2026-03"), 0, known, timedelta(days=1), frozenset({"acme/chat"}))
    scan = scan_file(0, file, gz([raw]), False, ScanSpec(rules, None))
    assert scan.events == 0
    assert [s.code for s in scan.set_aside] == ["USG011"]
