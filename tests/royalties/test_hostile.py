"""Malformed and hostile usage logs: each problem reported with its file and line and set
aside, never a traceback, and the good lines beside it still counted."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from formarket.usage.files import MAX_FILE_BYTES, MAX_LINE_BYTES
from formarket.usage.wire import CODES
from tests.royalties.helpers import Offer, call, close, gz, line, listed, usage_file

CHAT = Offer(
    "model",
    "acme/chat",
    "1.0.0",
    {"model": "per_request", "currency": "USD", "per_request": "0.01"},
)
LISTINGS = listed([CHAT])
GOOD = ("acme/chat", "1.0.0")
DAY = "2026-03-10"
PATH = usage_file(DAY)


def good(i: int) -> bytes:
    return line(call(f"good-{i}", model=GOOD))


def bad_event(**changes: Any) -> bytes:
    event = call("bad", model=GOOD)
    data = changes.pop("data", {})
    event.update(changes)
    event["data"].update(data)
    return line(event)


CASES: dict[str, tuple[str, bytes]] = {
    "not JSON": ("USG004", b'{"specversion": "1.0", "id": '),
    "binary junk": ("USG004", b"\x00\xff\xfe garbage"),
    "a line over the size limit": ("USG003", b'{"id": "' + b"x" * MAX_LINE_BYTES + b'"}'),
    "an unknown field": ("USG005", bad_event(extra="field")),
    "an unknown field in data": ("USG005", bad_event(data={"price": "1.00"})),
    "negative tokens": ("USG005", bad_event(data={"input_tokens": -5})),
    "tokens as a string": ("USG005", bad_event(data={"input_tokens": "5"})),
    "tokens as a float": ("USG005", bad_event(data={"input_tokens": 5.0})),
    "a huge count": ("USG005", bad_event(data={"output_tokens": 10**30})),
    "a missing field": (
        "USG005",
        line({k: v for k, v in call("x", model=GOOD).items() if k != "subject"}),
    ),
    "a bad event id": ("USG005", bad_event(id="has space")),
    "an id with a line break": ("USG005", bad_event(id="a\nb")),
    "a bad account": ("USG005", bad_event(data={"account": "x y"})),
    "a bad listing id": (
        "USG005",
        bad_event(data={"model": {"id": "Not/Valid!", "version": "1.0.0"}}),
    ),
    "a bad version": ("USG005", bad_event(data={"model": {"id": "acme/chat", "version": "v1"}})),
    "not an RFC 3339 time": ("USG005", bad_event(time="yesterday")),
    "a time not in UTC": ("USG006", bad_event(time="2026-03-10T12:00:00+02:00")),
    "a time without offset": ("USG006", bad_event(time="2026-03-10T12:00:00")),
    "a future timestamp": ("USG007", bad_event(time="2026-03-12T00:00:00Z")),
    "a listing that does not exist": (
        "USG008",
        bad_event(data={"model": {"id": "acme/ghost", "version": "1.0.0"}}),
    ),
    "a version that never existed": (
        "USG009",
        bad_event(data={"model": {"id": "acme/chat", "version": "9.9.9"}}),
    ),
    "another collector's source": ("USG010", bad_event(source="gateway/gw-9")),
    "no agent and no model": ("USG011", bad_event(data={"model": None})),
    "a call with instance seconds": ("USG011", bad_event(data={"instance_seconds": 60})),
    "usage older than the window": ("USG013", bad_event(time="2025-06-01T00:00:00Z")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_line_is_set_aside_with_its_file_and_line(name: str) -> None:
    code, bad = CASES[name]
    assert code in CODES
    closing, rendered = close({PATH: gz([good(1), bad, good(2)])}, LISTINGS)
    (aside,) = closing.summary.set_aside
    assert (aside.code, aside.file, aside.line) == (code, PATH, 2)
    assert aside.message
    counts = closing.summary.counts
    assert counts.counted == 2, "the good lines around it still count"
    assert counts.lines == 3
    statement = json.loads(rendered["statements/acme.json"])
    assert statement["currencies"][0]["lines"][0]["quantity"] == 2


def _bomb(size: int) -> bytes:
    """A small gzip file that inflates to `size` bytes, made without holding them."""
    engine = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    parts = [engine.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(engine.compress(b" " * (size % len(chunk))))
    parts.append(engine.flush())
    return b"".join(parts)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("not gzip", b"plain text, not gzip"),
        ("truncated gzip", gz([good(1), good(2)])[:-12]),
        ("corrupt gzip", gz([good(1)])[:20] + b"\x00" * 40),
        ("a gzip bomb", _bomb(MAX_FILE_BYTES + 1)),
    ],
)
def test_an_unreadable_file_is_set_aside_whole(name: str, data: bytes) -> None:
    other = usage_file(DAY, seq=2)
    closing, _ = close({PATH: data, other: gz([good(3)])}, LISTINGS)
    (aside,) = closing.summary.set_aside
    assert (aside.code, aside.file, aside.line) == ("USG001", PATH, 0)
    assert closing.summary.counts.counted == 1


def test_a_file_that_is_not_named_as_usage_is_reported() -> None:
    closing, _ = close({"registry/usage/2026/03/10/notes.txt": b"hello"}, LISTINGS)
    assert [a.code for a in closing.summary.set_aside] == ["USG014"]


def test_many_bad_lines_are_each_reported_and_nothing_is_lost() -> None:
    lines = [good(i) if i % 3 else CASES[sorted(CASES)[i % len(CASES)]][1] for i in range(60)]
    lines.append(b"")  # a blank line is not an event and not a problem
    closing, _ = close({PATH: gz(lines)}, LISTINGS)
    counts = closing.summary.counts
    assert counts.counted + counts.set_aside == 60
    assert sorted(a.line for a in closing.summary.set_aside) == [i + 1 for i in range(0, 60, 3)]
