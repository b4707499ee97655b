"""Reading usage files: gzip JSON lines in, per-file totals, event keys and set-aside lines out.

A pure function of a file's bytes and the rules of the close, fast enough for tens of millions
of events: msgspec decodes and validates each line in C (`wire`); events are summed per
(period, agent version, model version, outcome) as they are read, and each event's idempotency
key is kept only as a 64-bit hash; `tally` finds the keys seen more than once, reads just those
lines again and settles them exactly. Nothing here ever raises on bad input: every problem
becomes a `SetAside` with the file and line.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import msgspec

from formarket.usage.wire import (
    CODES,
    DECODER,
    MAX_FILE_BYTES,
    MAX_LINE_BYTES,
    USAGE_ROOT,
    UsageFile,
    WireEvent,
    WireRef,
    canonical_digest,
    decode_lines,
    decode_wanted,
    decompress,
    field_problem,
    is_utc,
    issue,
    month_index,
    month_text,
    parse_usage_path,
    ref_problem,
    usage_path,
    validate_line,
)
from formarket.schemas.usage import EVENT_ID_PATTERN, SetAside, event_problem

# The file format's names are re-exported: the gateway and the site read usage through here.
__all__ = [
    "CODES",
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "USAGE_ROOT",
    "FileScan",
    "Rules",
    "ScanSpec",
    "Sums",
    "TotalsKey",
    "UsageFile",
    "WireEvent",
    "canonical_digest",
    "decode_lines",
    "decode_wanted",
    "decompress",
    "key_digest",
    "month_index",
    "month_text",
    "parse_usage_path",
    "scan_file",
    "take_events",
    "usage_path",
    "validate_line",
]


@dataclass(frozen=True, slots=True)
class Rules:
    """What a close accepts: its period, the oldest period late usage may still belong to,
    the listing versions published as of its usage commit, and how far past its file's day an
    event's time may be."""

    period: int
    first: int
    known: frozenset[tuple[str, str]]
    skew: timedelta
    listings: frozenset[str] = frozenset()  # the ids in `known`, to tell USG008 from USG009


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """The rules for files new since the previous close, and those of the previous close for
    the files it had already read (`old`): a line's fate was decided by the close that first
    read it, and is never decided differently later."""

    new: Rules
    old: Rules | None


# (counted before, month index, agent (id, version), model (id, version), outcome is ok)
TotalsKey = tuple[bool, int, tuple[str, str] | None, tuple[str, str] | None, bool]
# events, requests, input tokens, output tokens, instance seconds
Sums = list[int]


@dataclass(slots=True)
class FileScan:
    """What one file holds, for `tally`: totals, and a key digest and line per event."""

    index: int
    lines: int = 0
    events: int = 0
    set_aside: list[SetAside] = field(default_factory=list)
    digests: array[int] = field(default_factory=lambda: array("q"))
    line_numbers: array[int] = field(default_factory=lambda: array("I"))
    totals: dict[TotalsKey, Sums] = field(default_factory=dict)


def _fast_events(raw: bytes) -> list[WireEvent] | None:
    """All lines at once when every line is a valid event (the common case); None sends the
    file to the line-by-line path, which says what is wrong where."""
    # A valid event outgrows the line limit only through whitespace: its strings are at most
    # 128 characters (768 written as escapes), its counts 13 digits, its fields fixed, which
    # makes a few KB. So lines are measured one by one only when whitespace runs occur.
    if (b"  " in raw or b"\t" in raw or b"\r" in raw) and max(
        map(len, raw.split(b"\n"))
    ) > MAX_LINE_BYTES:
        return None
    try:
        events = DECODER.decode_lines(raw)
    except msgspec.DecodeError:
        return None
    # Blank lines are skipped by decode_lines: numbering holds only when there are none.
    expected = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    if len(events) != expected:
        return None
    return events


def scan_file(index: int, file: UsageFile, data: bytes, old: bool, spec: ScanSpec) -> FileScan:
    """Read one usage file. `old` files were read by the previous close: their problems were
    reported then and are not reported again."""
    scan = FileScan(index)
    report = not old
    raw = decompress(data)
    if isinstance(raw, str):
        if report:
            scan.set_aside.append(issue("USG001", file.path, 0, raw))
        return scan
    scan.lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    fast = _fast_events(raw)
    if fast is not None:
        take_events(scan, file, fast, None, old, spec)
        return scan
    good: list[WireEvent] = []
    numbers: list[int] = []
    for number, item in decode_lines(raw):
        if isinstance(item, SetAside):
            if report:
                scan.set_aside.append(item.model_copy(update={"file": file.path}))
        else:
            good.append(item)
            numbers.append(number)
    take_events(scan, file, good, numbers, old, spec)
    return scan


_UTC = UTC
_CALL_TYPE = "dev.formarket.usage.call"


_IDS = re.compile("(?:" + EVENT_ID_PATTERN.strip("^$") + "\n)*")


def key_digest(source: str, ident: str) -> int:
    """A 64-bit number standing for an event's (source, id) when looking for repeats: Python's
    string hash, the same in this process and in the workers it forks (`scanner` checks), and
    only ever used to pick which lines to compare in full. `take_events` computes it inline."""
    return hash(f"{source}\0{ident}")


def take_events(
    scan: FileScan,
    file: UsageFile,
    events: Sequence[WireEvent],
    lines: Sequence[int] | None,
    old: bool,
    spec: ScanSpec,
) -> None:
    """Check and sum events into `scan`; events[i] is on line lines[i] (on line i + 1 when
    `lines` is None). The one definition of how an event counts: the hot loop of every file,
    and the re-reading of duplicate copies in `tally`.

    Problems with the line itself are reported by the close that reads the file first (`old`
    files were read by the previous one); problems that depend on the period (too late, a
    version unknown at the time) by the close whose period the event falls in."""
    new_rules = spec.new
    old_rules = spec.old if old and spec.old is not None else None
    settled = old_rules.period if old_rules is not None else -1
    skew = old_rules.skew if old_rules is not None else new_rules.skew
    limit = datetime.combine(file.day + timedelta(days=1), time(), _UTC) + skew
    source = file.source
    prefix = f"{source}\0"
    path = file.path
    joined = "".join([e.id + "\n" for e in events])
    # An id holding a line break would pass as two: the count of breaks rules that out.
    ids_ok = joined.count("\n") == len(events) and _IDS.fullmatch(joined) is not None
    lookup = _lookup(spec)
    numbers = lookup.numbers
    names = lookup.names
    problems = lookup.problems
    known_new = lookup.known_new
    known_old = lookup.known_old
    accounts = lookup.accounts
    subjects = lookup.subjects
    number_of = lookup.number_of
    pending: dict[tuple[bool, int, int, int, bool], Sums] = {}
    set_aside = scan.set_aside
    digests = scan.digests
    line_numbers = scan.line_numbers
    taken = 0

    def reject(code: str, number: int, message: str, report: bool) -> None:
        if report:
            set_aside.append(SetAside(code=code, file=path, line=number, message=message))

    # enumerate and zip reuse their result tuple: no tuple per event for the collector.
    for number, event in enumerate(events, 1) if lines is None else zip(lines, events, strict=True):
        moment = event.time
        if moment.tzinfo is not _UTC or moment >= limit or event.source != source:
            issue = _line_problem(event, file, limit, number)
            if issue is not None:
                reject(*issue, not old)
                continue
            moment = moment.astimezone(_UTC)
        data = event.data
        agent = data.agent
        model = data.model
        a = numbers.get(agent)
        if a is None:
            a = number_of(agent)  # type: ignore[arg-type]
        m = numbers.get(model)
        if m is None:
            m = number_of(model)  # type: ignore[arg-type]
        if (
            not ids_ok
            or data.account not in accounts
            or event.subject not in subjects
            or problems[a]
            or problems[m]
        ):
            problem = field_problem(event, accounts, subjects, ids_ok) or problems[a] or problems[m]
            if problem:
                reject("USG005", number, problem, not old)
                continue
        if event.type != _CALL_TYPE or data.instance_seconds or not (a or m):
            problem = event_problem(event.type, data)
            if problem:
                reject("USG011", number, problem, not old)
                continue
        month = moment.year * 12 + moment.month - 1
        # Events of periods the previous close settled are judged by its rules, and were
        # reported by it; every other event is this close's to judge and report.
        before = month <= settled
        rules = old_rules if before and old_rules is not None else new_rules
        if month < rules.first:
            reject(
                "USG013",
                number,
                f"usage of {month_text(month)} arrived too late: adjustments reach back to"
                f" {month_text(rules.first)} only",
                not before,
            )
            continue
        if month <= rules.period:
            known = known_old if before else known_new
            if not (known[a] and known[m]):
                missing = names[a] if not known[a] else names[m]
                assert missing is not None
                reject(*_unknown(missing, rules, number), not before)
                continue
        digests.append(hash(prefix + event.id))
        line_numbers.append(number)
        taken += 1
        total_key = (before, month, a, m, data.outcome == "ok")
        sums = pending.get(total_key)
        if sums is None:
            pending[total_key] = [
                1,
                data.requests,
                data.input_tokens,
                data.output_tokens,
                data.instance_seconds,
            ]
        else:
            sums[0] += 1
            sums[1] += data.requests
            sums[2] += data.input_tokens
            sums[3] += data.output_tokens
            sums[4] += data.instance_seconds
    scan.events += taken
    totals = scan.totals
    for (before, month, a, m, ok), sums in pending.items():
        named = (before, month, names[a], names[m], ok)
        current = totals.get(named)
        if current is None:
            totals[named] = sums
        else:
            for i, value in enumerate(sums):
                current[i] += value


def _line_problem(
    event: WireEvent, file: UsageFile, limit: datetime, number: int
) -> tuple[str, int, str] | None:
    moment = event.time
    if not is_utc(moment):
        return ("USG006", number, "time is not in UTC (end it in Z)")
    if moment >= limit:
        return (
            "USG007",
            number,
            f"time {moment:%Y-%m-%dT%H:%M:%SZ} is after the file's day ({file.day}) ended:"
            " a timestamp from the future",
        )
    if event.source != file.source:
        return (
            "USG010",
            number,
            f"source {event.source!r} differs from the file's ({file.source}): each collector"
            " writes only its own files",
        )
    return None


class _Lookup:
    """What the hot loop needs to know about values that recur, kept across the files of one
    close (a worker reads many): each listing version gets a small number (0 for none), so the
    loop hashes ints rather than structs or tuples, and each account and deployment is checked
    against its pattern once."""

    def __init__(self, spec: ScanSpec) -> None:
        self.spec = spec
        self.numbers: dict[WireRef | None, int] = {None: 0}
        self.names: list[tuple[str, str] | None] = [None]
        self.problems: list[str] = [""]
        self.known_new: list[bool] = [True]
        self.known_old: list[bool] = [True]
        self.accounts: set[str] = set()
        self.subjects: set[str] = set()

    def number_of(self, ref: WireRef) -> int:
        problem = ref_problem(ref)
        name = (ref.id, ref.version)
        number = self.numbers[ref] = len(self.names)
        self.names.append(name)
        self.problems.append(problem)
        self.known_new.append(not problem and name in self.spec.new.known)
        old = self.spec.old
        self.known_old.append(not problem and old is not None and name in old.known)
        return number

    def size(self) -> int:
        return len(self.names) + len(self.accounts) + len(self.subjects)


# One close at a time per process; a hostile log of endless distinct values cannot grow it
# past this many entries.
_LOOKUP_LIMIT = 1 << 21
_LOOKUP: list[_Lookup] = []


def _lookup(spec: ScanSpec) -> _Lookup:
    if not _LOOKUP or _LOOKUP[0].spec is not spec or _LOOKUP[0].size() > _LOOKUP_LIMIT:
        _LOOKUP[:] = [_Lookup(spec)]
    return _LOOKUP[0]


def _unknown(key: tuple[str, str], rules: Rules, number: int) -> tuple[str, int, str]:
    listing, version = key
    if listing in rules.listings:
        return ("USG009", number, f"{listing} has no version {version}")
    return ("USG008", number, f"no listing {listing}")
