"""Reading usage files: gzip JSON lines in, per-file totals, event keys and set-aside lines out.

The one reading of usage, for everything that reads it: the royalty close, the site's charts
and `formarket usage show`. A pure function of a file's bytes and the rules of the reading,
fast enough for tens of millions of events: msgspec decodes and validates each line in C
(`wire`); events are summed per (period, agent version, model version, outcome) as they are
read, and each event's idempotency key is kept only as a 64-bit keyed digest (`digests`),
from which the readers find the keys seen more than once and settle them exactly. Nothing
here ever raises on bad input: every problem becomes a `SetAside` with the file, the line and
its USG code.

    Rules, ScanSpec     what a reading accepts (a close's period and listings, the clock skew)
    close_rules         the rules of a close, from the platform's terms
    reading_spec        the rules of a reading outside a close, from the platform's terms
    select_files        which files a close reads, and the files it sets aside whole
    scan_file           one file read, checked and summed (take_events: the hot loop)
    totals_of           chosen events of a file taken again, as the reading took them
    read_file           the same, and the file's lines (FileLines) for a look at the next file
    events_on           chosen lines of those kept, decoded
    fetch_lines         chosen lines of a file decoded again
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from formarket.schemas.usage import (
    RoyaltyPolicy,
    SetAside,
    event_problem,
)
from formarket.usage.columns import PendingKey, add_pending, take_columns, take_line_columns
from formarket.usage.files import (
    MAX_LINE_BYTES,
    UsageFile,
    decompress,
    month_index,
    month_text,
)
from formarket.usage.lines import read_columns
from formarket.usage.scan import (
    FileScan,
    Rules,
    ScanFile,
    ScanSpec,
    Sums,
    Totals,
    TotalsKey,
    lookup_of,
)
from formarket.usage.wire import (
    DECODER,
    WireData,
    WireEvent,
    all_ids_valid,
    decode_lines,
    field_problem,
    is_utc,
    issue,
)
from formarket.yamldoc import YamlError, load_yaml

__all__ = [
    "FileLines",
    "FileScan",
    "Rules",
    "ScanFile",
    "ScanSpec",
    "Sums",
    "TotalsKey",
    "close_rules",
    "events_on",
    "fetch_lines",
    "read_file",
    "reading_spec",
    "scan_file",
    "select_files",
    "take_events",
    "take_events_each",
    "totals_of",
]

Key = TypeVar("Key")


def _fast_events(raw: bytes, lines: int) -> list[WireEvent] | None:
    """All `lines` lines at once when every line is a valid event (the common case); None
    sends the file to the line-by-line path, which says what is wrong where."""
    # Lines measured in C: numpy finds the line breaks of megabytes in a millisecond, where
    # bytes.count and splitting the lines cost about a microsecond a line.
    breaks = np.flatnonzero(np.frombuffer(raw, np.uint8) == _NEWLINE)
    if len(raw) and int(np.diff(breaks, prepend=-1, append=len(raw)).max()) - 1 > MAX_LINE_BYTES:
        return None
    try:
        events = DECODER.decode_lines(raw)
    except msgspec.DecodeError:
        return None
    # Blank lines are skipped by decode_lines: numbering holds only when there are none.
    if len(events) != lines:
        return None
    return events


_NEWLINE = ord("\n")


def _line_count(raw: bytes) -> int:
    # A last line without its line break is a line too.
    return int(np.count_nonzero(np.frombuffer(raw, np.uint8) == _NEWLINE)) + (
        0 if raw.endswith(b"\n") or not raw else 1
    )


def scan_file(
    index: int, file: UsageFile, data: bytes, old: bool, spec: ScanSpec, *, keep: bool = False
) -> FileScan:
    """Read one usage file. `old` files were read by the previous close: their problems were
    reported then and are not reported again. With `keep`, the events that count are kept
    in `accepted`, in line order."""
    return read_file(index, file, data, old, spec, keep=keep)[0]


class FileLines(Mapping[int, bytes]):
    """A file's lines by number (from 1, each without its line break), over its bytes as
    read: kept for a moment by a reader that looks at the next file of the same collector,
    and read for the few lines a second look wants. Where each line starts is the C reader's,
    or found when first asked."""

    __slots__ = ("_starts", "raw")

    def __init__(self, raw: bytes, starts: npt.NDArray[np.int64] | None = None) -> None:
        self.raw = raw
        self._starts = starts

    def _found(self) -> npt.NDArray[np.int64]:
        if self._starts is None:
            # Line breaks found by numpy, in C: splitting a file into lines to read a few
            # of them cost as much as reading them all.
            breaks = np.flatnonzero(np.frombuffer(self.raw, np.uint8) == _NEWLINE)
            self._starts = np.concatenate(([0], breaks + 1))[: _line_count(self.raw)]
        return self._starts

    def __getitem__(self, number: int) -> bytes:
        starts = self._found()
        if not 1 <= number <= len(starts):
            raise KeyError(number)
        if number < len(starts):
            return self.raw[int(starts[number - 1]) : int(starts[number]) - 1]
        return self.raw[int(starts[number - 1]) :].removesuffix(b"\n")

    def __len__(self) -> int:
        return len(self._found())

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, len(self) + 1))


def read_file(
    index: int, file: UsageFile, data: bytes, old: bool, spec: ScanSpec, *, keep: bool = False
) -> tuple[FileScan, FileLines | None]:
    """`scan_file`, and the file's lines (None when it is not a gzip file of usage)."""
    scan = FileScan(index)
    report = not old
    raw = decompress(data)
    if isinstance(raw, str):
        if report:
            scan.set_aside.append(issue("USG001", file.path, 0, raw))
        return scan, None
    if not keep:
        read = read_columns(raw, payers=spec.by_account)
        if read is not None and take_line_columns(scan, file, read, old, spec):
            scan.lines = read.count
            return scan, FileLines(raw, read.starts)
    scan.lines = _line_count(raw)
    fast = _fast_events(raw, scan.lines)
    if fast is not None:
        take_events(scan, file, fast, None, old, spec)
        if keep:
            _keep(scan, fast, range(1, len(fast) + 1))
        return scan, FileLines(raw)
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
    if keep:
        _keep(scan, good, numbers)
    return scan, FileLines(raw)


def _keep(scan: FileScan, events: Sequence[WireEvent], numbers: Iterable[int]) -> None:
    # Outside the hot loop: a close never keeps events, only the few readers that list them.
    counted = set(scan.line_numbers)
    scan.accepted = [e for n, e in zip(numbers, events, strict=True) if n in counted]


_UTC = UTC
_CALL_TYPE = "dev.formarket.usage.call"


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
    version unknown at the time) by the close whose period the event falls in.

    A file whose every event counts is checked and summed column by column instead
    (`columns.take_columns`), to the same result; the loop (`take_events_each`) reads
    every other."""
    if not take_columns(scan, file, events, lines, old, spec):
        take_events_each(scan, file, events, lines, old, spec)


def totals_of(
    index: int,
    file: UsageFile,
    events: Sequence[WireEvent],
    lines: Sequence[int],
    old: bool,
    spec: ScanSpec,
) -> Totals:
    """The totals of `events` of file `index` (events[i] on line lines[i]), taken as any
    reading takes them: the copies of repeated events, read again to be taken back."""
    scan = FileScan(index)
    take_events(scan, file, events, lines, old, spec)
    return scan.totals


def take_events_each(
    scan: FileScan,
    file: UsageFile,
    events: Sequence[WireEvent],
    lines: Sequence[int] | None,
    old: bool,
    spec: ScanSpec,
) -> None:
    """`take_events` one event at a time: the definition the column path is held to."""
    new_rules = spec.new
    old_rules = spec.old if old and spec.old is not None else None
    settled = old_rules.period if old_rules is not None else -1
    skew = old_rules.skew if old_rules is not None else new_rules.skew
    limit = datetime.combine(file.day + timedelta(days=1), time(), _UTC) + skew
    source = file.source
    path = file.path
    by_day = spec.by_day
    by_account = spec.by_account
    ids_ok = all_ids_valid([e.id for e in events])
    lookup = lookup_of(spec)
    numbers = lookup.numbers
    names = lookup.names
    problems = lookup.problems
    known_new = lookup.known_new
    known_old = lookup.known_old
    accounts = lookup.accounts
    subjects = lookup.subjects
    sources = lookup.sources
    number_of = lookup.number_of
    max_requests, max_input, max_output, max_seconds = (old_rules or new_rules).ceilings
    pending: dict[PendingKey, Sums] = {}
    set_aside = scan.set_aside
    counted_ids: list[str] = []
    claimed_ids: list[str] = []
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
        if (
            event.type != _CALL_TYPE
            or data.instance_seconds
            or not (a or m)
            or data.tokens_source not in sources
            or isinstance(data.parent, str)
        ):
            problem = event_problem(event.type, data)
            if problem:
                reject("USG011", number, problem, not old)
                continue
            # Checked against its pattern once: a file holds a handful of these.
            sources.add(data.tokens_source)
        if (
            data.output_tokens > max_output
            or data.input_tokens > max_input
            or data.requests > max_requests
            or data.instance_seconds > max_seconds
        ):
            reject("USG018", number, _above(data, (old_rules or new_rules).ceilings), not old)
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
            claimed_ids.append(event.id)
            scan.claim_lines.append(number)
            continue
        if month <= rules.period:
            known = known_old if before else known_new
            if not (known[a] and known[m]):
                missing = names[a] if not known[a] else names[m]
                assert missing is not None
                reject(*_unknown(missing, rules, number), not before)
                continue
        counted_ids.append(event.id)
        line_numbers.append(number)
        taken += 1
        day = moment.date().toordinal() if by_day else 0
        total_key = (
            before,
            month,
            day,
            a,
            m,
            data.outcome == "ok",
            data.account if by_account else "",
        )
        measured = 1 if data.tokens_source != "upstream" and data.requests else 0
        sums = pending.get(total_key)
        if sums is None:
            pending[total_key] = [
                1,
                data.requests,
                data.input_tokens,
                data.output_tokens,
                data.instance_seconds,
                measured,
            ]
        else:
            sums[0] += 1
            sums[1] += data.requests
            sums[2] += data.input_tokens
            sums[3] += data.output_tokens
            sums[4] += data.instance_seconds
            sums[5] += measured
    scan.events += taken
    add_pending(scan, pending, lookup, counted_ids, claimed_ids, source, spec)


def _above(data: WireData, ceilings: tuple[int, int, int, int]) -> str:
    names = ("requests", "input_tokens", "output_tokens", "instance_seconds")
    values = (data.requests, data.input_tokens, data.output_tokens, data.instance_seconds)
    over = [
        f"{name} {value} above {limit}"
        for name, value, limit in zip(names, values, ceilings, strict=True)
        if value > limit
    ]
    return (
        f"{', '.join(over)}: more than a gateway can produce in one event (the ceilings of"
        " royalties/policy.yaml)"
    )


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


def _unknown(key: tuple[str, str], rules: Rules, number: int) -> tuple[str, int, str]:
    listing, version = key
    if listing in rules.listings:
        return ("USG009", number, f"{listing} has no version {version}")
    return ("USG008", number, f"no listing {listing}")


def events_on(
    index: int, lines: Mapping[int, bytes], wanted: Iterable[int]
) -> list[tuple[int, int, WireEvent]]:
    """The events on the wanted lines of file `index`, of `lines` (line number -> line);
    lines that are not there, or not events, are skipped."""
    out = []
    for number in sorted(set(wanted)):
        try:
            out.append((index, number, DECODER.decode(lines[number])))
        except (KeyError, msgspec.DecodeError):
            continue
    return out


def fetch_lines(index: int, data: bytes, lines: set[int]) -> list[tuple[int, int, WireEvent]]:
    """The events on `lines` of file `index`, whose bytes are `data`: the few lines the
    royalties look at twice, to settle events seen more than once."""
    raw = decompress(data)
    assert isinstance(raw, bytes), "a file that was read once reads again"
    return events_on(index, FileLines(raw), lines)


def select_files(
    new: Mapping[str, tuple[UsageFile, Key]],
    new_bad: Iterable[str],
    old: Mapping[str, tuple[UsageFile, Key]],
    old_bad: Iterable[str],
) -> tuple[list[ScanFile], list[Key], list[SetAside]]:
    """The files a close reads, each with its content's key (a git blob id), and the files
    it sets aside whole. `new` and `new_bad` are the usage files of the commit being closed
    and the paths under registry/usage/ not named as usage files; `old` and `old_bad` those
    of the commit the previous close read (empty for a first close). A file the previous
    close read is read again as it was then: its fate was decided by that close."""
    items: list[tuple[str, bool, ScanFile, Key]] = []
    extra: list[SetAside] = []
    for path, (file, key) in old.items():
        items.append((path, True, ScanFile(file, True), key))
        if path not in new:
            extra.append(
                SetAside(
                    code="USG016",
                    file=path,
                    line=0,
                    message="deleted after the previous close read it: usage files are"
                    " append-only; the copy that close read is still read from git",
                )
            )
    for path, (file, key) in new.items():
        if path in old and old[path][1] == key:
            continue
        if path in old:
            extra.append(
                SetAside(
                    code="USG015",
                    file=path,
                    line=0,
                    message="rewritten after the previous close: usage files are append-only;"
                    " the copy that close read stays counted, the new one is read as new",
                )
            )
        items.append((path, False, ScanFile(file, False), key))
    for path in sorted(set(new_bad) - set(old_bad)):
        extra.append(
            SetAside(
                code="USG014",
                file=path,
                line=0,
                message="not a usage file: usage is registry/usage/YYYY/MM/DD/"
                "<kind>/<name>-<seq>.jsonl.gz",
            )
        )
    items.sort(key=lambda i: (i[0], not i[1]))
    return [i[2] for i in items], [i[3] for i in items], extra


def close_rules(period: str, policy: RoyaltyPolicy, known: frozenset[tuple[str, str]]) -> Rules:
    """What the close of `period` accepts under the platform's terms, `known` being the
    listing versions published as of the usage it reads."""
    month = month_index(period)
    return Rules(
        month,
        month - policy.late_usage_months,
        known,
        timedelta(minutes=policy.clock_skew_minutes),
        frozenset(listing for listing, _ in known),
        _ceilings(policy),
    )


def _ceilings(policy: RoyaltyPolicy) -> tuple[int, int, int, int]:
    c = policy.ceilings
    return (c.requests, c.input_tokens, c.output_tokens, c.instance_seconds)


# Without terms to read, the widest clock skew terms may set (RoyaltyPolicy's bound): a
# reading outside a close then leaves out at least what every close would set aside.
_WIDEST_SKEW = timedelta(minutes=1440)


def reading_spec(policy: bytes | None, seed: int = 0) -> ScanSpec:
    """The rules of a reading outside a close (the site's charts, `formarket usage show`),
    with the clock skew of the platform's terms (the bytes of royalties/policy.yaml): every
    check of a line and of its file, none of those a close's period decides (usage too late,
    a listing version not published by then)."""
    skew = _WIDEST_SKEW
    ceilings = Rules(0, 0, frozenset(), skew).ceilings
    if policy is not None:
        try:
            terms = RoyaltyPolicy.model_validate(load_yaml(policy, "royalties/policy.yaml").data)
            skew = timedelta(minutes=terms.clock_skew_minutes)
            ceilings = _ceilings(terms)
        except (YamlError, ValidationError):
            skew = _WIDEST_SKEW  # broken terms: the royalties report them, no close runs
    # No period is judged: every month is later than -1 and none is before it.
    return ScanSpec(
        Rules(period=-1, first=-1, known=frozenset(), skew=skew, ceilings=ceilings),
        None,
        seed,
        by_day=True,
    )
