"""Flushing the spool into git: sealed segments in, `registry/usage/.../<source>-<seq>.jsonl.gz`
committed by the bot, each event exactly once.

A flush takes whole sealed segments and commits their events in one commit, whose message
names the segments it holds (a `Formarket-Usage-Segments:` trailer). Only then does it note
them in its state file (`spool/.flushed.json`) and delete them. Whatever point it is killed at,
the next flush knows what is done:

- killed before the commit moved the branch: nothing was published; the segments are still
  there and are committed next time, with the same event ids (ids are written in the spool
  when the call is metered and never made again);
- killed after the commit, before the state file: the next flush walks the branch back from
  its tip to the last commit its state knows (or to commits older than its oldest segment),
  reads the trailers, finds its segments committed and deletes them;
- killed after the state file: the segments it names are deleted on sight.

Flushes of one spool take a lock, so two never take the same segments; flushes of different
spools (other gateways, the farm's meter) only meet at the branch, where commits are
compare-and-swap and retried (`market.writer.commit_changes`), and their files never collide because
each source writes its own. A line whose checksum fails, a torn last line or a line that is not
a usage event is set aside in `spool/rejected/`, reported, and the rest is committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
from dulwich.objects import Commit, ObjectID
from dulwich.repo import BaseRepo, Repo

from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.market.governance import bot_at
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, list_dir
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.usage import event_problem
from formarket.usage.files import pack_lines, parse_usage_path, usage_path
from formarket.usage.spool import (
    SEGMENT_SUFFIX,
    LineProblem,
    parse_segment,
    sealed_segments,
)
from formarket.usage.wire import DECODER, WireEvent

__all__ = [
    "SEGMENTS_TRAILER",
    "FlushResult",
    "SetAsideLine",
    "flush",
    "flush_all",
    "segment_trailer",
]

SEGMENTS_TRAILER = "Formarket-Usage-Segments"
_STATE = ".flushed.json"
_LOCK = ".flush.lock"
_REJECTED = "rejected"
# How far before its oldest segment a commit holding it can be (clocks of one machine drift
# little; this also covers a gateway and a flusher on two machines kept in sync by NTP).
_CLOCK_SLACK = 3600
_TRAILER_RE = re.compile(rf"^{SEGMENTS_TRAILER}: (.*)$", re.MULTILINE)
_NAME_RE = re.compile(r"^([0-9a-f]{7,32})-([0-9]{6,})$")
_STALE_LOCK = 10.0
_log = logging.getLogger("formarket.usage")


@dataclass(frozen=True, slots=True)
class SetAsideLine:
    """A spool line that was not committed, and why."""

    segment: str
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class FlushResult:
    commit: str | None
    files: tuple[tuple[str, int], ...]  # (path, events)
    events: int
    segments: tuple[str, ...]
    set_aside: tuple[SetAsideLine, ...]
    reconciled: tuple[str, ...] = ()  # segments found already committed by an earlier flush


class _State(msgspec.Struct, forbid_unknown_fields=True):
    format: str = "formarket.spool-flushed/1"
    commit: str | None = None  # the last commit this spool's flushes made or found
    segments: dict[str, str] = msgspec.field(default_factory=dict)  # segment -> commit ("" none)


class _AlreadyCommitted(Exception):
    """Another flush committed some of our segments while we were building the commit."""


@dataclass(slots=True)
class _Batch:
    segments: list[str] = field(default_factory=list)
    lines: dict[str, list[tuple[date, bytes]]] = field(default_factory=dict)  # by source
    events: int = 0
    set_aside: list[SetAsideLine] = field(default_factory=list)
    rejected: dict[str, list[LineProblem]] = field(default_factory=dict)


# --- the segments a commit holds, in its message -------------------------------------------


def segment_trailer(names: Sequence[str]) -> str:
    """`boot:first-last` ranges: a day of one-second segments is a line, not a page."""
    runs: list[tuple[str, int, int]] = []
    for name in sorted(names):
        match = _NAME_RE.match(name)
        if match is None:
            raise ValueError(f"not a segment name: {name}")
        boot, number = match.group(1), int(match.group(2))
        if runs and runs[-1][0] == boot and runs[-1][2] == number - 1:
            runs[-1] = (boot, runs[-1][1], number)
        else:
            runs.append((boot, number, number))
    return ",".join(f"{boot}:{lo}-{hi}" for boot, lo, hi in runs)


def _trailer_names(message: str) -> Iterator[str]:
    for match in _TRAILER_RE.finditer(message):
        for run in match.group(1).split(","):
            boot, _, span = run.strip().partition(":")
            lo, _, hi = span.partition("-")
            if not (boot and lo.isdigit() and hi.isdigit()) or int(hi) - int(lo) > 10**7:
                continue
            for number in range(int(lo), int(hi) + 1):
                yield f"{boot}-{number:06d}"


def _boot_seconds(name: str) -> float:
    """When the writer of a segment started (its boot prefix is milliseconds in hex, then six
    random hex digits)."""
    match = _NAME_RE.match(name)
    if match is None:
        return 0.0
    return int(match.group(1)[:-6] or "0", 16) / 1000


def _committed(
    repo: BaseRepo, tip: ObjectID | None, stop: bytes | None, oldest: float
) -> dict[str, str]:
    """Segments named by commits on the branch's first-parent line since `stop` (or since
    commits older than `oldest`, less a slack for clocks)."""
    found: dict[str, str] = {}
    current = tip
    while current is not None and current != stop:
        try:
            commit = repo.object_store[current]
        except KeyError:
            break
        if not isinstance(commit, Commit):
            break
        if SEGMENTS_TRAILER.encode() in commit.message:
            for name in _trailer_names(commit.message.decode("utf-8", "replace")):
                found[name] = current.decode()
        if commit.commit_time < oldest - _CLOCK_SLACK:
            break
        current = commit.parents[0] if commit.parents else None
    return found


# --- the spool's own files --------------------------------------------------------------------


@contextlib.contextmanager
def _locked(spool: Path) -> Iterator[None]:
    spool.mkdir(parents=True, exist_ok=True)
    with open(spool / _LOCK, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_state(spool: Path) -> _State:
    try:
        return msgspec.json.decode((spool / _STATE).read_bytes(), type=_State)
    except FileNotFoundError:
        return _State()
    except msgspec.DecodeError:
        # Written atomically, so only a hand edit breaks it; git still knows what was
        # committed, and reconciling against it is what a lost state file costs.
        return _State()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_state(spool: Path, state: _State) -> None:
    write_atomically(spool / _STATE, msgspec.json.encode(state))


def _delete(spool: Path, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (spool / f"{name}{SEGMENT_SUFFIX}").unlink()
    _fsync_dir(spool)


def _set_aside(spool: Path, segment: str, problems: Sequence[LineProblem]) -> None:
    """Keep the lines that were not committed, with why, for a person to look at."""
    folder = spool / _REJECTED
    folder.mkdir(exist_ok=True)
    records = [
        {"segment": segment, "line": p.line, "reason": p.reason, "raw": p.raw.decode("latin-1")}
        for p in problems
    ]
    write_atomically(
        folder / f"{segment}.jsonl", b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    )


# --- reading segments -----------------------------------------------------------------------


def _read(path: Path, batch: _Batch) -> None:
    name = path.name[: -len(SEGMENT_SUFFIX)]
    read = parse_segment(path.read_bytes())
    problems = list(read.problems)
    payloads = [payload for _, payload in read.events]
    try:
        # One call decodes and checks every line in C; the slow path only when one is bad.
        events: list[WireEvent | None] = list(DECODER.decode_lines(b"\n".join(payloads)))
        if len(events) != len(payloads):
            raise msgspec.DecodeError("a line holds more or less than one event")
    except msgspec.DecodeError:
        events = []
        for number, payload in read.events:
            try:
                events.append(DECODER.decode(payload))
            except msgspec.DecodeError as exc:
                problems.append(LineProblem(number, f"not a usage event: {exc}", payload))
                events.append(None)
    for (number, payload), event in zip(read.events, events, strict=True):
        if event is None:
            continue
        problem = event_problem(event.type, event.data)
        if problem:
            problems.append(LineProblem(number, f"not a usage event: {problem}", payload))
            continue
        batch.lines.setdefault(event.source, []).append(
            (event.time.astimezone(UTC).date(), payload)
        )
        batch.events += 1
    batch.segments.append(name)
    if problems:
        problems.sort(key=lambda p: p.line)
        batch.rejected[name] = problems
        batch.set_aside.extend(SetAsideLine(name, p.line, p.reason) for p in problems)


# --- building the files -----------------------------------------------------------------------


def _chunks(lines: list[tuple[date, bytes]], limit: int) -> Iterator[list[tuple[date, bytes]]]:
    chunk: list[tuple[date, bytes]] = []
    size = 0
    for item in lines:
        if chunk and size + len(item[1]) + 1 > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1]) + 1
    if chunk:
        yield chunk


def _gzip(lines: list[tuple[date, bytes]]) -> bytes:
    return pack_lines(line for _, line in lines)


def _files(batch: _Batch, today: date, file_bytes: int) -> list[tuple[str, date, int, bytes]]:
    """(source, day, events, gzip bytes) of each file. A file's day is the day it is written,
    or the latest day of its events if that is later (a clock behind), so that no event is
    from after its file's day."""
    plan: list[tuple[str, date, list[tuple[date, bytes]]]] = []
    for source in sorted(batch.lines):
        for chunk in _chunks(batch.lines[source], file_bytes):
            plan.append((source, max(today, max(day for day, _ in chunk)), chunk))
    # zlib lets go of the GIL while it compresses: one thread per core.
    with ThreadPoolExecutor(max_workers=max(1, min(len(plan), os.cpu_count() or 1))) as pool:
        blobs = list(pool.map(_gzip, [chunk for _, _, chunk in plan]))
    return [(s, d, len(c), b) for (s, d, c), b in zip(plan, blobs, strict=True)]


def _next_seq(repo: BaseRepo, tree: ObjectID | None, day: date, source: str) -> int:
    if tree is None:
        return 1
    folder = usage_path(day, source, 1).rsplit("/", 1)[0]
    top = 0
    for name in list_dir(repo, tree, folder):
        parsed = parse_usage_path(f"{folder}/{name}")
        if parsed is not None and parsed.source == source:
            top = max(top, parsed.seq)
    return top + 1


# --- the flush ---------------------------------------------------------------------------------


def _identity(repo: BaseRepo, tip: ObjectID | None) -> Identity:
    if tip is None:
        raise FormarketError(
            "the branch has no commits, so no registry/governance.yaml names the bot",
            hint="flush into a marketplace repository",
        )
    return bot_at(repo, tip)


def flush(
    repo: Repo,
    spool: Path,
    *,
    branch: str = "main",
    identity: Identity | None = None,
    now: datetime | None = None,
    max_events: int = 2_000_000,
    file_bytes: int = 64 << 20,
) -> FlushResult:
    """Commit the events of the spool's sealed segments (up to about `max_events`) to
    `branch`, as the bot named by registry/governance.yaml unless `identity` is given."""
    with _locked(spool):
        state = _load_state(spool)
        done = [name for name in state.segments if (spool / f"{name}{SEGMENT_SUFFIX}").exists()]
        _delete(spool, done)
        pending = [
            p
            for p in sealed_segments(spool)
            if p.name[: -len(SEGMENT_SUFFIX)] not in state.segments
        ]
        # Forget segments that are gone: only those on disk can be mistaken for new.
        state.segments = {}
        if not pending:
            _save_state(spool, state)
            return FlushResult(None, (), 0, (), ())
        names = [p.name[: -len(SEGMENT_SUFFIX)] for p in pending]
        tip = find_tip(repo, branch)
        oldest = min(_boot_seconds(name) for name in names)
        found = _committed(repo, tip, state.commit.encode() if state.commit else None, oldest)
        reconciled = [name for name in names if name in found]
        if reconciled:
            state.segments.update((name, found[name]) for name in reconciled)
            state.commit = tip.decode() if tip is not None else state.commit
            _save_state(spool, state)
            _delete(spool, reconciled)
            pending = [p for p in pending if p.name[: -len(SEGMENT_SUFFIX)] not in found]
        batch = _Batch()
        for path in pending:
            if batch.events >= max_events:
                break
            _read(path, batch)
        for name, problems in batch.rejected.items():
            _set_aside(spool, name, problems)
        commit_id, files = _commit(repo, branch, batch, identity, now, file_bytes, tip)
        state.segments.update((name, commit_id or "") for name in batch.segments)
        if commit_id is not None:
            state.commit = commit_id
        _save_state(spool, state)
        _delete(spool, batch.segments)
        return FlushResult(
            commit_id,
            tuple(files),
            batch.events,
            tuple(batch.segments),
            tuple(batch.set_aside),
            tuple(reconciled),
        )


def _commit(
    repo: Repo,
    branch: str,
    batch: _Batch,
    identity: Identity | None,
    now: datetime | None,
    file_bytes: int,
    seen: ObjectID | None,
) -> tuple[str | None, list[tuple[str, int]]]:
    if not batch.events:
        return None, []
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    built = _files(batch, today, file_bytes)
    sources = sorted({source for source, _, _, _ in built})
    message = (
        f"Usage from {', '.join(sources)}: {batch.events:,} events in {len(built)}"
        f" file{'s' if len(built) != 1 else ''}\n\n"
        f"{SEGMENTS_TRAILER}: {segment_trailer(batch.segments)}\n"
    )
    mine = set(batch.segments)
    paths: list[tuple[str, int]] = []
    last_seen = [seen]

    def changes(tip: ObjectID | None) -> dict[str, bytes | None]:
        # The branch moved since we looked: if a flush of this spool got there first (it can
        # only if our lock was broken), committing again would count its events twice.
        if tip != last_seen[0]:
            if mine & set(_committed(repo, tip, last_seen[0], 0.0)):
                raise _AlreadyCommitted
            last_seen[0] = tip
        tree = commit_tree(repo, tip) if tip is not None else None
        out: dict[str, bytes | None] = {}
        paths.clear()
        taken: dict[tuple[date, str], int] = {}
        for source, day, count, blob in built:
            seq = taken.get((day, source)) or _next_seq(repo, tree, day, source)
            taken[(day, source)] = seq + 1
            path = usage_path(day, source, seq)
            out[path] = blob
            paths.append((path, count))
        return out

    author = identity or _identity(repo, seen)
    try:
        # A flusher killed mid-commit leaves git's lock behind; it is broken after
        # `_STALE_LOCK` seconds rather than the writer's minute, so a restarted flusher goes on.
        commit_id = commit_changes(
            repo, branch, changes, message, author, attempts=200, stale_lock_seconds=_STALE_LOCK
        )
    except _AlreadyCommitted:
        raise FormarketError(
            "another flush of this spool committed some of the same segments",
            hint="run one flusher per spool; `formarket usage flush` takes a lock for that",
        ) from None
    return commit_id.decode(), list(paths)


def flush_all(
    repo: Repo,
    spool: Path,
    *,
    branch: str = "main",
    identity: Identity | None = None,
    max_events: int = 2_000_000,
) -> list[FlushResult]:
    """Flush until no sealed segment is left; the result of each flush that did something."""
    results: list[FlushResult] = []
    while True:
        result = flush(repo, spool, branch=branch, identity=identity, max_events=max_events)
        if not result.segments and not result.reconciled:
            return results
        results.append(result)
