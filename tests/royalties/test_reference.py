"""The close's reading of usage against the slow, obvious reference (`tests/royalties/reference`),
on random small months: duplicates within a file, across files and across commits, copies
that conflict, lines set aside for every reason the USG codes name, late usage, usage of
later months, and a corrupt file now and then."""

from __future__ import annotations

import gzip
import json
import random
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.royalties import engine
from formarket.royalties.tally import Tally
from formarket.usage import lines
from tests.royalties.helpers import POLICY, Offer, call, hours, listed, market_of, usage_file
from tests.royalties.reference import Expected, UsageLog, expected_tally

PERIOD = "2026-03"
OFFERS = (
    Offer(
        "model",
        "acme/model-a",
        "1.0.0",
        {"model": "per_request", "currency": "USD", "per_request": "0.01"},
    ),
    Offer(
        "model",
        "zeta/model-b",
        "2.1.0",
        {
            "model": "per_token",
            "currency": "EUR",
            "input_per_million": "1",
            "output_per_million": "3",
        },
    ),
    Offer(
        "agent",
        "nova/agent-c",
        "1.0.0",
        {"model": "per_request", "currency": "USD", "per_request": "0.5"},
    ),
)
MODELS = [("acme/model-a", "1.0.0"), ("zeta/model-b", "2.1.0")]
AGENTS = [("nova/agent-c", "1.0.0")]
# (month of 2026, or of 2025 when above 12 less 12): the period, its adjustments, a later
# month, and one too old to be adjusted any more.
MONTHS = (3, 3, 3, 2, 1, 12 + 12, 4, 11 + 12)
BREAKS = (
    "garbage",
    "missing",
    "account",
    "offset",
    "future",
    "source",
    "neither",
    "ceiling",
    "version",
    "listing",
    "seconds",
)


@dataclass
class _Line:
    day: date
    source: str
    text: bytes


def _moment(rng: random.Random, month: int, days: int = 28) -> tuple[date, str]:
    year = 2026 if month <= 12 else 2025
    day = date(year, (month - 1) % 12 + 1, rng.randint(1, days))
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    return day, f"{day.isoformat()}T{clock}Z"


def _event(
    rng: random.Random, ident: str, days: int, months: tuple[int, ...]
) -> tuple[date, dict[str, Any]]:
    day, time = _moment(rng, rng.choice(months), days)
    if rng.random() < 0.15:
        return day, hours(ident, model=rng.choice(MODELS), seconds=rng.randint(1, 3600), time=time)
    model = rng.choice(MODELS) if rng.random() < 0.8 else None
    agent = rng.choice(AGENTS) if model is None or rng.random() < 0.3 else None
    return day, call(
        ident,
        model=model,
        agent=agent,
        time=time,
        source=rng.choice(("gateway/gw-1", "gateway/gw-2")),
        input_tokens=rng.randint(0, 5000),
        output_tokens=rng.randint(0, 900),
        requests=rng.randint(0, 3),
        outcome=rng.choice(("ok", "ok", "ok", "error", "rejected")),
    )


def _break(
    rng: random.Random, how: str, day: date, event: dict[str, Any]
) -> tuple[date, str, bytes]:
    """The event broken one way: the file's day, its source and the line."""
    source = event["source"]
    data = event["data"]
    if how == "garbage":
        return day, source, b'{"specversion": "1.0", "id": '
    if how == "missing":
        del data["outcome"]
    elif how == "account":
        data["account"] = "no spaces allowed"
    elif how == "offset":
        event["time"] = event["time"].replace("Z", "+02:00")
    elif how == "future":
        day -= timedelta(days=rng.randint(1, 3))
    elif how == "source":
        source = "gateway/gw-9"
    elif how == "neither":
        data["agent"] = data["model"] = None
    elif how == "ceiling":
        data["input_tokens"] = POLICY.ceilings.input_tokens + 1
    elif how == "version":
        data["model"] = {"id": "acme/model-a", "version": "9.9.9"}
    elif how == "listing":
        data["model"] = {"id": "ghost/model-x", "version": "1.0.0"}
    elif how == "seconds" and event["type"].endswith("call"):
        data["instance_seconds"] = 5
    return day, source, json.dumps(event, separators=(",", ":")).encode()


def _file_day(rng: random.Random, day: date) -> date:
    # Usage too old to adjust still arrives in files the close reads.
    return day if day >= date(2025, 11, 30) else date(2026, 3, rng.randint(1, 28))


@st.composite
def months(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The usage files of a commit, and of a later one (path -> bytes)."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    # Crowded months put many events on the first day of the period and of the months it
    # adjusts, in one file a source and a commit: files of dozens of events, most of them
    # clean, which the reader checks and sums column by column.
    crowded = draw(st.booleans())
    days = 1 if crowded else 28
    in_months = MONTHS[:5] if crowded else MONTHS
    count = draw(st.integers(1, 120 if crowded else 40))
    broken = draw(st.floats(0, 0.05 if crowded else 0.4))
    repeated = draw(st.floats(0, 0.4))
    lines: list[tuple[int, _Line]] = []  # (commit, line)
    for i in range(count):
        # Ids of many lengths: their digests must not depend on the ids beside them.
        day, event = _event(rng, f"e-{i}" + "x" * rng.choice((0, 0, 5, 13, 40)), days, in_months)
        text = json.dumps(event, separators=(",", ":")).encode()
        where = _Line(_file_day(rng, day), event["source"], text)
        if rng.random() < broken:
            fday, source, text = _break(rng, rng.choice(BREAKS), where.day, json.loads(text))
            where = _Line(fday, source, text)
        lines.append((0, where))
        if rng.random() < repeated:
            for _ in range(rng.randint(1, 3)):
                copy = json.loads(where.text) if where.text.endswith(b"}") else None
                if copy is not None and rng.random() < 0.4:
                    # A copy that says something else: other tokens, or another time.
                    if rng.random() < 0.5:
                        copy["data"]["output_tokens"] += 1
                    else:
                        _, copy["time"] = _moment(rng, rng.choice(MONTHS))
                text = where.text if copy is None else json.dumps(copy).encode()
                commit = 1 if rng.random() < 0.4 else 0
                lines.append((commit, _Line(where.day, where.source, text)))
    files: list[dict[str, list[bytes]]] = [{}, {}]
    for commit, item in lines:
        # The later commit writes sequence 0, so its files sort first: commit order decides.
        seq = 0 if commit else 1 if crowded else rng.randint(1, 3)
        path = usage_file(item.day.isoformat(), item.source, seq)
        chosen = files[commit].setdefault(path, [])
        chosen.insert(rng.randint(0, len(chosen)), item.text)
        if rng.random() < 0.05:
            chosen.append(b"")
    out: list[dict[str, bytes]] = [
        {path: gzip.compress(b"\n".join(body) + b"\n", mtime=0) for path, body in part.items()}
        for part in files
    ]
    if rng.random() < 0.1:
        out[0][usage_file("2026-03-15", "gateway/gw-2", 9)] = b"not gzip at all"
    return out[0], out[1]


def _expected(first: dict[str, bytes], later: dict[str, bytes]) -> Expected:
    logs = [UsageLog(0, p, d) for p, d in first.items()]
    logs += [UsageLog(1, p, d) for p, d in later.items()]
    c = POLICY.ceilings
    return expected_tally(
        logs,
        period=PERIOD,
        known={(o.ident, o.version) for o in OFFERS},
        late_months=POLICY.late_usage_months,
        skew_minutes=POLICY.clock_skew_minutes,
        ceilings={
            "requests": c.requests,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "instance_seconds": c.instance_seconds,
        },
    )


def _found(result: Tally) -> Expected:
    q = result.usage
    return Expected(
        usage={
            k: [v.events, v.requests, v.input_tokens, v.output_tokens, v.instance_seconds]
            for k, v in q.items()
        },
        counts=result.counts.model_dump(),
        conflicts=[(c.source, c.id, c.counted, c.ignored) for c in result.conflicts],
        set_aside=sorted((s.file, s.line, s.code) for s in result.set_aside),
    )


@settings(max_examples=40)
@given(months())
def test_the_close_reads_usage_as_the_reference_does(
    month: tuple[dict[str, bytes], dict[str, bytes]],
) -> None:
    first, later = month
    if not first:
        first = {usage_file("2026-03-01", "gateway/gw-1", 1): gzip.compress(b"", mtime=0)}
    expected = _expected(first, later)
    repo = market_of(listed(OFFERS), first, later or None)
    computed = engine.preview(repo, PERIOD)
    found = _found(computed.tally)
    assert found.set_aside == expected.set_aside
    assert found.conflicts == expected.conflicts
    assert found.counts == expected.counts
    assert found.usage == expected.usage
    # Through the cache: every file read and kept, then the same month from what was kept
    # (the whole tally), then from the files' partials alone (as when new files arrive).
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder)
        cold = engine.preview(repo, PERIOD, cache_dir=cache)
        assert len(list(cache.rglob("*.tally"))) == 1
        assert len(list(cache.rglob("*.scan"))) == len(first) + len(later)
        warm = engine.preview(repo, PERIOD, cache_dir=cache)
        for kept in cache.rglob("*.tally"):
            kept.unlink()
        partial = engine.preview(repo, PERIOD, cache_dir=cache)
    # Without the C reader of the collectors' lines: the same files, byte for byte.
    with mock.patch.object(lines, "_lines", None):
        assert lines.read_columns(b"{}") is None
        without = engine.preview(repo, PERIOD)
    for other in (cold, warm, partial, without):
        assert _found(other.tally) == found
        assert other.files == computed.files


def test_the_reference_can_tell_a_difference() -> None:
    """The comparison is not vacuous: a month with a counted event, a duplicate and a line set
    aside gives figures the reference and the close both see."""
    event = call("e-1", model=MODELS[0], time="2026-03-10T12:00:00Z")
    text = json.dumps(event).encode()
    first = {
        usage_file("2026-03-10"): gzip.compress(text + b"\n" + text + b"\nnot json\n", mtime=0)
    }
    expected = _expected(first, {})
    assert expected.counts["duplicates"] == 1
    assert expected.set_aside == [(usage_file("2026-03-10"), 3, "USG004")]
    assert expected.usage == {("usage", PERIOD, "acme/model-a", "1.0.0"): [1, 1, 100, 50, 0]}
    found = _found(engine.preview(market_of(listed(OFFERS), first), PERIOD).tally)
    assert found == expected
