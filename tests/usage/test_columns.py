"""The column path of the reader and its loop agree: over random files of events, valid and
hostile (bad strings, other sources, times in the future or not in UTC, late usage, listing
versions not published, counts above the ceilings, inconsistent types, repeated ids), read
with a close's rules or a chart's, as new or as already read, `take_columns` either declines
and leaves the scan as it found it, or gives the very scan the loop gives, totals in the same
order; and a file the loop counts whole, it never declines. The identifier checks it runs over
joined values accept exactly what the schema's patterns accept."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.schemas.usage import ACCOUNT_PATTERN, DEPLOYMENT_PATTERN, EVENT_ID_PATTERN
from formarket.usage.columns import take_columns
from formarket.usage.files import UsageFile, month_index
from formarket.usage.reader import FileLines, Rules, ScanSpec, events_on, take_events_each
from formarket.usage.scan import FileScan
from formarket.usage.scanner import repeated_lines
from formarket.usage.wire import (
    DECODER,
    WireEvent,
    all_accounts_valid,
    all_ids_valid,
    all_subjects_valid,
    joined_accounts_valid,
    joined_ids_valid,
    joined_subjects_valid,
)
from tests.usage.helpers import call, hours, line

CHAT = ("acme/chat", "1.0.0")
HELPER = ("zeta/helper", "0.1.0")
UNPUBLISHED = ("acme/chat", "9.0.0")
NOBODY = ("nobody/thing", "1.0.0")
FILE = UsageFile(
    "registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz", date(2026, 3, 10), "gateway/gw-1", 1
)
NEW = Rules(
    month_index("2026-03"),
    month_index("2026-02"),
    frozenset({CHAT, HELPER}),
    timedelta(minutes=60),
    frozenset({CHAT[0], HELPER[0]}),
    (1000, 10**7, 10**6, 3600),
)
OLD = Rules(
    month_index("2026-02"),
    month_index("2026-01"),
    frozenset({CHAT}),
    timedelta(minutes=30),
    frozenset({CHAT[0]}),
)

_DAMAGE: dict[str, Any] = {
    "a bad id": lambda e: e.update(id="-starts-with-a-dash"),
    "an id with a space": lambda e: e.update(id="has space"),
    "a non-ASCII id": lambda e: e.update(id="évent"),
    "a bad account": lambda e: e["data"].update(account="x y"),
    "a bad subject": lambda e: e.update(subject="Dep-1"),
    "a subject ending in a dash": lambda e: e.update(subject="dep-"),
    "a bad listing id": lambda e: e["data"].update(model={"id": "No!", "version": "1.0.0"}),
    "a bad version": lambda e: e["data"].update(model={"id": CHAT[0], "version": "v1"}),
    "not published": lambda e: e["data"].update(
        model={"id": UNPUBLISHED[0], "version": UNPUBLISHED[1]}
    ),
    "no such listing": lambda e: e["data"].update(model={"id": NOBODY[0], "version": NOBODY[1]}),
    "not in UTC": lambda e: e.update(time="2026-03-10T12:00:00+02:00"),
    "UTC written as an offset": lambda e: e.update(time="2026-03-10T12:00:00+00:00"),
    "in the future": lambda e: e.update(time="2026-03-12T09:00:00Z"),
    "just before the skew ends": lambda e: e.update(time="2026-03-11T00:20:00Z"),
    "too late": lambda e: e.update(time="2025-12-31T23:00:00Z"),
    "of the previous month": lambda e: e.update(time="2026-02-27T10:00:00Z"),
    "of a later month": lambda e: e.update(time="2026-04-01T00:00:00Z"),
    "another source": lambda e: e.update(source="gateway/gw-9"),
    "no listing": lambda e: e["data"].update(agent=None, model=None),
    "a call with instance time": lambda e: e["data"].update(instance_seconds=60),
    "above a ceiling": lambda e: e["data"].update(requests=1001),
    "a huge count": lambda e: e["data"].update(input_tokens=10**12),
    "a bad tokens source": lambda e: e["data"].update(tokens_source="guessed"),
    "a hashed tokens source": lambda e: e["data"].update(tokens_source="sha256:" + "a" * 64),
    "a bad parent": lambda e: e["data"].update(parent="has space"),
    "a parent": lambda e: e["data"].update(parent="gw-1-000001"),
    "a cut": lambda e: e["data"].update(cut="max_tokens"),
}


@st.composite
def files(draw: st.DrawFn) -> list[WireEvent]:
    """The decoded events of one file: mostly valid, some hostile, ids from a small pool."""
    events = []
    size = draw(st.integers(0, 30))
    # Clean files, files with one hostile event (each check must catch it alone), and files
    # with many.
    hostile = draw(st.sampled_from(["none", "one", "many"]))
    target = draw(st.integers(0, max(size - 1, 0)))
    for position in range(size):
        day = draw(st.sampled_from([9, 10, 10, 10]))
        moment = (
            f"2026-03-{day:02d}T{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:00Z"
        )
        ident = f"e-{draw(st.integers(0, 40))}"
        if draw(st.integers(0, 6)) == 0:
            event = hours(ident, model=CHAT, seconds=draw(st.integers(1, 3600)), time=moment)
            event["source"] = FILE.source
            if draw(st.booleans()):
                event["data"]["requests"] = 1  # instance hours that count requests
        else:
            model = draw(st.sampled_from([CHAT, None]))
            event = call(
                ident,
                model=model,
                agent=draw(st.sampled_from([HELPER, None])) if model else HELPER,
                time=moment,
                input_tokens=draw(st.integers(0, 10**6)),
                output_tokens=draw(st.integers(0, 10**4)),
                requests=draw(st.sampled_from([0, 1, 1, 2])),
                outcome=draw(st.sampled_from(["ok", "ok", "error", "rejected"])),
            )
            event["data"]["account"] = draw(st.sampled_from(["acct-1", "acct-2", "a@b.c"]))
            event["data"]["tokens_source"] = draw(st.sampled_from(["upstream", "measured"]))
        if hostile == "many" or (hostile == "one" and position == target):
            kind = draw(st.sampled_from(["valid", *sorted(_DAMAGE)]))
        else:
            kind = "valid"
        if kind in _DAMAGE:
            _DAMAGE[kind](event)
        events.append(DECODER.decode(line(event)))
    return events


def _scan(events: list[WireEvent], lines: list[int] | None, old: bool, spec: ScanSpec) -> FileScan:
    scan = FileScan(3)
    take_events_each(scan, FILE, events, lines, old, spec)
    return scan


def _state(scan: FileScan) -> tuple[object, ...]:
    return (
        scan.events,
        scan.set_aside,
        scan.digests.tobytes(),
        scan.line_numbers.tobytes(),
        scan.claims.tobytes(),
        scan.claim_lines.tobytes(),
        scan.totals.named(),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**63 - 1),
)
def test_the_columns_give_what_the_loop_gives_or_decline(
    events: list[WireEvent], old: bool, by_day: bool, by_account: bool, numbered: bool, seed: int
) -> None:
    spec = ScanSpec(NEW, OLD if old else None, seed, by_day=by_day, by_account=by_account)
    lines = [2 * i + 1 for i in range(len(events))] if numbered else None
    expected = _scan(events, lines, old, spec)
    scan = FileScan(3)
    took = take_columns(scan, FILE, events, lines, old, spec)
    if took:
        assert _state(scan) == _state(expected)
    else:
        assert _state(scan) == _state(FileScan(3))
    counted_whole = expected.events == len(events) and not expected.claims
    # Values the loop checks on some events only, the columns on all (and decline).
    patterns_hold = all(
        e.data.tokens_source != "guessed" and e.data.parent != "has space" for e in events
    )
    if counted_whole and patterns_hold and len(events) >= 2:
        assert took


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
@pytest.mark.parametrize(
    ("old", "by_day", "by_account"),
    [(False, False, False), (False, True, False), (True, False, False), (False, False, True)],
)
def test_each_hostile_event_alone_is_judged_as_the_loop_judges_it(
    damage: str, old: bool, by_day: bool, by_account: bool
) -> None:
    events = [call(f"e-{i}", model=CHAT, time=f"2026-03-10T0{i}:00:00Z") for i in range(4)]
    events.append(hours("h-1", model=CHAT, seconds=3600, time="2026-03-10T05:59:59Z"))
    events[-1]["source"] = FILE.source
    _DAMAGE[damage](events[2])
    decoded = [DECODER.decode(line(e)) for e in events]
    spec = ScanSpec(NEW, OLD if old else None, 11, by_day=by_day, by_account=by_account)
    expected = _scan(decoded, None, old, spec)
    scan = FileScan(3)
    if take_columns(scan, FILE, decoded, None, old, spec):
        assert _state(scan) == _state(expected)
    else:
        assert _state(scan) == _state(FileScan(3))
        assert expected.events < len(events) or damage in {"a bad tokens source", "a bad parent"}


def test_a_clean_file_is_taken_by_the_columns() -> None:
    events = [
        DECODER.decode(line(call(f"e-{i}", model=CHAT, time=f"2026-03-10T0{i}:00:00Z")))
        for i in range(5)
    ]
    spec = ScanSpec(NEW, None, 7)
    scan = FileScan(0)
    assert take_columns(scan, FILE, events, None, False, spec)
    assert _state(scan) == _state(_scan(events, None, False, spec))
    assert scan.totals.named() == {
        (False, month_index("2026-03"), 0, None, CHAT, True, ""): [5, 5, 500, 250, 0, 0]
    }


_ALPHABET = "abcxyzABZ09-._:@/ \n\té"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(_ALPHABET, min_size=1, max_size=70), max_size=6))
def test_the_joined_checks_accept_what_the_patterns_accept(values: list[str]) -> None:
    for check, pattern in (
        (all_ids_valid, EVENT_ID_PATTERN),
        (all_accounts_valid, ACCOUNT_PATTERN),
        (all_subjects_valid, DEPLOYMENT_PATTERN),
    ):
        expected = all(re.fullmatch(pattern, v) is not None for v in values)
        assert check(values) == expected, (pattern, values)
    joined = "".join(v + "\n" for v in values).encode()
    for joined_check, pattern in (
        (joined_ids_valid, EVENT_ID_PATTERN),
        (joined_accounts_valid, ACCOUNT_PATTERN),
        (joined_subjects_valid, DEPLOYMENT_PATTERN),
    ):
        expected = all(re.fullmatch(pattern, v) is not None for v in values)
        assert joined_check(joined, len(values)) == expected, (pattern, values)


def test_the_joined_checks_bound_lengths() -> None:
    assert all_ids_valid(["a" * 128])
    assert not all_ids_valid(["a" * 129])
    assert all_subjects_valid(["a" * 64])
    assert not all_subjects_valid(["a" * 65])
    assert not all_ids_valid(["a\nb"])
    assert not all_ids_valid([""])
    assert all_ids_valid([])
    assert joined_ids_valid(b"a" * 128 + b"\n", 1)
    assert not joined_ids_valid(b"a" * 129 + b"\n", 1)
    assert not joined_ids_valid(b"a\n\n", 2)
    assert not joined_ids_valid(b"a\nb", 2)
    assert joined_ids_valid(b"", 0)
    assert not joined_ids_valid(b"a\n", 0)


_LINES = [line(call("e-1", model=CHAT)), line(call("e-2", agent=HELPER)), b"", b"junk", b"{}"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_LINES), max_size=8),
    st.booleans(),
    st.sets(st.integers(-1, 10), max_size=5),
)
def test_the_lines_asked_for_are_those_split_gives(
    lines: list[bytes], final_break: bool, wanted: set[int]
) -> None:
    raw = b"\n".join(lines) + (b"\n" if final_break else b"")
    split = raw.split(b"\n")
    expected = [
        (n, DECODER.decode(split[n - 1]))
        for n in sorted(wanted)
        if 1 <= n <= len(split) and split[n - 1] in _LINES[:2]
    ]
    assert events_on(0, FileLines(raw), wanted) == [(0, n, e) for n, e in expected]


def test_repeats_are_found_across_and_within_files() -> None:
    one, two = FileScan(0), FileScan(1)
    spec = ScanSpec(NEW, None, 5)
    take_events_each(
        one,
        FILE,
        [DECODER.decode(line(call(i, model=CHAT))) for i in ("a", "b", "a")],
        None,
        False,
        spec,
    )
    take_events_each(
        two,
        FILE,
        [DECODER.decode(line(call(i, model=CHAT))) for i in ("c", "b")],
        None,
        False,
        spec,
    )
    wanted, claimed = repeated_lines([one, two])
    assert dict(wanted) == {0: {1, 2, 3}, 1: {2}}
    assert claimed == set()
