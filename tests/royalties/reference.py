"""The close's reading of usage written the slow, obvious way: the oracle of the pipeline.

Every line is parsed with `json.loads` and judged by the rules of the platform's terms in the
order the rules give them; every copy of every event is kept in a list; the first committed
copy of each (source, id) decides it. No hashing, no caching, no workers, no partial sums: if
the pipeline and this disagree, the pipeline is wrong (or this file is, and it is short enough
to see which).

It handles the inputs `tests/royalties/test_reference.py` generates: events that are valid,
or broken in one of the ways the USG codes name.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from formarket.schemas._types import LISTING_ID_PATTERN, SEMVER_PATTERN
from formarket.schemas.usage import (
    ACCOUNT_PATTERN,
    DEPLOYMENT_PATTERN,
    EVENT_ID_PATTERN,
    MAX_COUNT,
    event_problem,
)

__all__ = ["Expected", "UsageLog", "expected_tally"]

_TOP = ("specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data")
_COUNTS = ("input_tokens", "output_tokens", "requests", "duration_ms", "instance_seconds")
_TYPES = ("dev.formarket.usage.call", "dev.formarket.usage.instance-hours")
_PATH = re.compile(r"^registry/usage/(\d{4})/(\d{2})/(\d{2})/([a-z][a-z0-9-]*/[a-z0-9-]+)-\d+")


@dataclass(frozen=True)
class UsageLog:
    """A file as committed: `commit` orders the commits (0 first)."""

    commit: int
    path: str
    data: bytes


@dataclass
class Expected:
    """What a close of the period must find: usage per (kind, month, listing, version) as
    [events, requests, input tokens, output tokens, instance seconds], the counts of its
    summary, its conflicts as (source, id, counted, ignored) and its set-asides as
    (file, line, code)."""

    usage: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: list[tuple[str, str, str, tuple[str, ...]]] = field(default_factory=list)
    set_aside: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class _Copy:
    order: tuple[int, str, int]
    where: str
    event: dict[str, Any]
    month: int
    claim: bool  # too late: decides its event, counted nowhere


def _month(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _text(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def _is_text(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 128


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_ref(value: object) -> bool:
    return value is None or (
        isinstance(value, dict)
        and set(value) == {"id", "version"}
        and all(_is_text(v) for v in value.values())
    )


def _shape_ok(obj: object) -> bool:
    """The event's fields, their types and bounds (what any reader of the contract checks
    before looking at values)."""
    if not isinstance(obj, dict) or tuple(sorted(obj)) != tuple(sorted(_TOP)):
        return False
    data = obj["data"]
    required = {"account", "agent", "model", "outcome", "tokens_source", *_COUNTS} - {
        "instance_seconds"
    }
    if not isinstance(data, dict) or not required <= set(data) <= required | {"instance_seconds"}:
        return False
    return (
        obj["specversion"] == "1.0"
        and obj["type"] in _TYPES
        and obj["datacontenttype"] == "application/json"
        and all(_is_text(obj[k]) for k in ("id", "source", "subject"))
        and isinstance(obj["time"], str)
        and _parse_time(obj["time"]) is not None
        and _is_text(data["account"])
        and _is_text(data["tokens_source"])
        and all(_is_count(data.get(k, 0)) for k in _COUNTS)
        and data["outcome"] in ("ok", "error", "rejected")
        and _is_ref(data["agent"])
        and _is_ref(data["model"])
    )


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _patterns_ok(obj: dict[str, Any]) -> bool:
    data = obj["data"]
    refs = [r for r in (data["agent"], data["model"]) if r is not None]
    return (
        re.fullmatch(EVENT_ID_PATTERN, obj["id"]) is not None
        and re.fullmatch(ACCOUNT_PATTERN, data["account"]) is not None
        and re.fullmatch(DEPLOYMENT_PATTERN, obj["subject"]) is not None
        and all(re.fullmatch(LISTING_ID_PATTERN, r["id"]) for r in refs)
        and all(re.fullmatch(SEMVER_PATTERN, r["version"]) for r in refs)
    )


class _Data:
    """An event's data with attribute access, for the contract's `event_problem`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.agent = data["agent"]
        self.model = data["model"]
        self.tokens_source = data["tokens_source"]
        self.parent = data.get("parent")
        self.instance_seconds = data.get("instance_seconds", 0)
        self.requests = data["requests"]
        self.input_tokens = data["input_tokens"]
        self.output_tokens = data["output_tokens"]


def _content(obj: dict[str, Any]) -> str:
    """What an event says, however its line was written (the time as an instant)."""
    moment = _parse_time(obj["time"])
    assert moment is not None
    data = {"instance_seconds": 0, **obj["data"]}
    return json.dumps(
        {**obj, "time": moment.astimezone(UTC).isoformat(), "data": data}, sort_keys=True
    )


def expected_tally(
    logs: list[UsageLog],
    *,
    period: str,
    known: set[tuple[str, str]],
    late_months: int,
    skew_minutes: int,
    ceilings: dict[str, int],
) -> Expected:
    """The first close of `period` over `logs` (nothing closed before it)."""
    current = int(period[:4]) * 12 + int(period[5:7]) - 1
    first = current - late_months
    first_day = date(first // 12, first % 12 + 1, 1) - timedelta(days=1)
    listings = {listing for listing, _ in known}
    out = Expected()
    copies: list[_Copy] = []
    files = lines_total = 0
    for log in sorted(logs, key=lambda f: (f.commit, f.path)):
        match = _PATH.match(log.path)
        assert match is not None, log.path
        day = date(int(match[1]), int(match[2]), int(match[3]))
        if day < first_day:
            continue
        files += 1
        source = match[4]
        try:
            raw = gzip.decompress(log.data)
        except (OSError, EOFError, zlib.error):
            out.set_aside.append((log.path, 0, "USG001"))
            continue
        split = raw.split(b"\n")
        if split[-1] == b"":
            split.pop()
        lines_total += len(split)
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        limit = end + timedelta(minutes=skew_minutes)
        for number, text in enumerate(split, 1):
            code = ""
            if len(text) > 16 << 10:
                code = "USG003"
            elif not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                code = code or "USG004"
                obj = None
            if not code and not _shape_ok(obj):
                code = "USG005"
            if code:
                out.set_aside.append((log.path, number, code))
                continue
            assert isinstance(obj, dict)
            moment = _parse_time(obj["time"])
            assert moment is not None
            data = obj["data"]
            refs = [r for r in (data["agent"], data["model"]) if r is not None]
            month = _month(moment.astimezone(UTC))
            if moment.utcoffset():
                code = "USG006"
            elif moment >= limit:
                code = "USG007"
            elif obj["source"] != source:
                code = "USG010"
            elif not _patterns_ok(obj):
                code = "USG005"
            elif event_problem(obj["type"], _Data(data)):
                code = "USG011"
            elif any(data.get(name, 0) > ceiling for name, ceiling in ceilings.items()):
                code = "USG018"
            elif month < first:
                code = "USG013"
            elif month <= current and any((r["id"], r["version"]) not in known for r in refs):
                unknown = next(r for r in refs if (r["id"], r["version"]) not in known)
                code = "USG009" if unknown["id"] in listings else "USG008"
            if code:
                out.set_aside.append((log.path, number, code))
                if code != "USG013":
                    continue
            copies.append(
                _Copy(
                    (log.commit, log.path, number),
                    f"{log.path}:{number}",
                    obj,
                    month,
                    code == "USG013",
                )
            )
    events = sum(not c.claim for c in copies)
    by_key: dict[tuple[str, str], list[_Copy]] = {}
    for copy in copies:
        by_key.setdefault((copy.event["source"], copy.event["id"]), []).append(copy)
    duplicates = 0
    counting: list[_Copy] = []
    for (source, ident), group in sorted(by_key.items()):
        group.sort(key=lambda c: c.order)
        kept, others = group[0], group[1:]
        if not kept.claim:
            counting.append(kept)
        if not others or all(c.claim for c in group):
            continue
        duplicates += len(others)
        if any(_content(c.event) != _content(kept.event) for c in others):
            out.conflicts.append((source, ident, kept.where, tuple(c.where for c in others)))
    counted = adjustments = later = not_charged = 0
    for copy in counting:
        data = copy.event["data"]
        if copy.month > current:
            later += 1
            continue
        if copy.month == current:
            counted += 1
        else:
            adjustments += 1
        if data["outcome"] != "ok":
            not_charged += 1
            continue
        ref = data["agent"] if data["agent"] is not None else data["model"]
        kind = "usage" if copy.month == current else "adjustment"
        sums = out.usage.setdefault((kind, _text(copy.month), ref["id"], ref["version"]), [0] * 5)
        sums[0] += 1
        sums[1] += data["requests"]
        sums[2] += data["input_tokens"]
        sums[3] += data["output_tokens"]
        sums[4] += data.get("instance_seconds", 0)
    out.set_aside.sort()
    out.counts = {
        "files": files,
        "lines": lines_total,
        "events": events,
        "duplicates": duplicates,
        "conflicts": len(out.conflicts),
        "set_aside": len(out.set_aside),
        "not_charged": not_charged,
        "counted": counted,
        "adjustments": adjustments,
        "counted_before": 0,
        "later": later,
    }
    return out
