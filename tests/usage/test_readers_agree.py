"""Everything that reads usage reads it through one reader: over random valid and damaged
lines, the site's charts, `formarket usage show` and the royalty close accept and set aside
exactly the same lines, with the same codes.

(Whether a listing version was published by then, and whether usage came too late, are the
close's own rules, decided by its period: no line here breaks them.)"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.gateway.show import usage_summary
from formarket.site.usage import file_scan, file_totals
from formarket.usage.files import MAX_LINE_BYTES
from formarket.usage.reader import reading_spec
from tests.royalties.helpers import POLICY_FILE, Offer, close, listed, market_of
from tests.usage.helpers import call, gz, hours, line, usage_file

CHAT = ("acme/chat", "1.0.0")
HELPER = ("zeta/helper", "0.1.0")
PRICE = {"model": "per_request", "currency": "USD", "per_request": "0.01"}
LISTINGS = listed([Offer("model", *CHAT, PRICE), Offer("agent", *HELPER, PRICE)])
PATH = usage_file("2026-03-10")
SPEC = reading_spec(POLICY_FILE)


def _set(event: dict[str, Any], where: tuple[str, ...], value: Any) -> dict[str, Any]:
    target = event
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return event


# Each damage: how it changes a valid event's dict, or its line's bytes.
_DAMAGE: dict[str, Any] = {
    "an unknown field": lambda e: _set(e, ("extra",), 1),
    "negative tokens": lambda e: _set(e, ("data", "input_tokens"), -5),
    "tokens as a string": lambda e: _set(e, ("data", "output_tokens"), "5"),
    "a huge count": lambda e: _set(e, ("data", "requests"), 10**30),
    "a bad id": lambda e: _set(e, ("id",), "has space"),
    "a bad account": lambda e: _set(e, ("data", "account"), "x y"),
    "a bad listing id": lambda e: _set(e, ("data", "model"), {"id": "No!", "version": "1.0.0"}),
    "a bad version": lambda e: _set(e, ("data", "model"), {"id": CHAT[0], "version": "v1"}),
    "not a time": lambda e: _set(e, ("time",), "yesterday"),
    "not in UTC": lambda e: _set(e, ("time",), "2026-03-10T12:00:00+02:00"),
    "no offset": lambda e: _set(e, ("time",), "2026-03-10T12:00:00"),
    "another source": lambda e: _set(e, ("source",), "gateway/gw-9"),
    "no listing": lambda e: _set(_set(e, ("data", "model"), None), ("data", "agent"), None),
    "a call with instance time": lambda e: _set(e, ("data", "instance_seconds"), 60),
}
_BYTES_DAMAGE: dict[str, Any] = {
    "cut short": lambda raw: raw[: len(raw) // 2],
    "binary junk": lambda raw: b"\x00\xff\xfe" + raw[3:],
    "too long": lambda raw: raw[:-1] + b" " * MAX_LINE_BYTES + b"}",
    "blank": lambda raw: b"",
}


@st.composite
def usage_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines of one collector's file: events (ids from a small pool, so some repeat), some
    damaged, with times across the month and past the end of the file's day."""
    out = []
    for _ in range(draw(st.integers(1, 25))):
        day = draw(st.integers(1, 12))
        hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
        moment = f"2026-03-{day:02d}T{hour:02d}:{minute:02d}:00Z"
        ident = f"e-{draw(st.integers(0, 30))}"
        if draw(st.integers(0, 9)) == 0:
            event = hours(ident, model=CHAT, seconds=draw(st.integers(1, 3600)), time=moment)
            event["source"] = "gateway/gw-1"
        else:
            model = draw(st.sampled_from([CHAT, None]))
            event = call(
                ident,
                model=model,
                agent=draw(st.sampled_from([HELPER, None])) if model else HELPER,
                time=moment,
                input_tokens=draw(st.integers(0, 10**6)),
                output_tokens=draw(st.integers(0, 10**4)),
                outcome=draw(st.sampled_from(["ok", "ok", "error", "rejected"])),
            )
        kind = draw(st.sampled_from(["valid"] * 4 + sorted(_DAMAGE) + sorted(_BYTES_DAMAGE)))
        if kind in _DAMAGE:
            event = _DAMAGE[kind](event)
        raw = line(event)
        if kind in _BYTES_DAMAGE:
            raw = _BYTES_DAMAGE[kind](raw)
        out.append(raw)
    return out


def _expected_totals(lines: list[bytes], set_aside: set[int]) -> dict[str, dict[str, list[int]]]:
    """What the charts should show: every line not set aside, read on its own."""
    totals: dict[str, dict[str, list[int]]] = {}
    for number, raw in enumerate(lines, 1):
        if number in set_aside or not raw.strip():
            continue
        event = json.loads(raw)
        data = event["data"]
        if data["outcome"] != "ok":
            continue
        # An agent's call credits the agent alone, as a close credits it.
        ref = data["agent"] or data["model"]
        if ref is not None:
            row = totals.setdefault(ref["id"], {}).setdefault(event["time"][:7], [0, 0, 0, 0])
            for i, name in enumerate(
                ("requests", "input_tokens", "output_tokens", "instance_seconds")
            ):
                row[i] += data[name]
    return totals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_lines(), st.booleans())
def test_the_charts_show_and_the_close_set_aside_the_same_lines(
    lines: list[bytes], truncated: bool
) -> None:
    data = gz(lines)
    if truncated:
        data = data[:-12]
    closing, _ = close({PATH: data}, LISTINGS)
    by_close = sorted((a.code, a.line) for a in closing.summary.set_aside)

    scan = file_scan(PATH, data, SPEC)
    assert scan is not None
    assert sorted((a.code, a.line) for a in scan.set_aside) == by_close
    assert scan.events == closing.summary.counts.events

    shown = usage_summary(market_of(LISTINGS, {PATH: data}))
    assert shown.set_aside == len(by_close)
    assert shown.events + shown.duplicates == closing.summary.counts.events

    if not truncated:
        expected = _expected_totals(lines, {number for _, number in by_close})
        assert file_totals(PATH, data, SPEC) == expected


def test_a_file_not_named_as_usage_is_read_by_none() -> None:
    path = "registry/usage/2026/03/10/gw-1.jsonl.gz"
    data = gz([line(call("e-1", model=CHAT))])
    closing, _ = close({path: data}, LISTINGS)
    assert [(a.code, a.file) for a in closing.summary.set_aside] == [("USG014", path)]
    assert closing.summary.counts.events == 0
    assert file_scan(path, data, SPEC) is None
    assert file_totals(path, data, SPEC) == {}
    assert usage_summary(market_of(LISTINGS, {path: data})).events == 0
