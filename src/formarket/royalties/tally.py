"""From per-file scans to the period's usage: duplicates settled exactly, events classified.

An event is identified by (source, id). The scans keep a 64-bit hash of each event's key;
sorting the hashes (numpy: 16 bytes an event instead of a Python object each) finds every key
that may occur more than once. Only those lines are read again and compared in full, so a hash
collision costs a re-read, never a lost or doubled event.

Which copy counts: the first committed. Copies the previous close had already read come first
(it may have counted one of them); then first-parent commit order (the commit that brought the
file), then file path, then line. So a copy committed later never changes an earlier result,
whatever its bytes; a later copy that differs is reported with the contents of both. The other
copies are subtracted exactly as they were added (`take_events` on the copy again).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import add

from formarket.schemas.usage import SetAside, SummaryCounts, UsageConflict
from formarket.usage.files import month_text
from formarket.usage.reader import FileScan, ScanFile, ScanSpec, Sums, totals_of
from formarket.usage.scanner import repeated_lines
from formarket.usage.totals import Totals, merge
from formarket.usage.wire import WireEvent, canonical_digest, canonical_json

__all__ = [
    "Fetch",
    "Quantities",
    "Tally",
    "UsageKey",
    "tally",
]


@dataclass(frozen=True, slots=True)
class Quantities:
    """What the charged (outcome ok) events of one listing version added up to."""

    events: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    instance_seconds: int = 0


# (usage or adjustment, the period the usage belongs to, listing id, version)
UsageKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Tally:
    usage: dict[UsageKey, Quantities]
    counts: SummaryCounts
    conflicts: tuple[UsageConflict, ...]
    set_aside: tuple[SetAside, ...]
    # With a reading `by_account`: the same usage per paying account (its name in git), as
    # sums (events, requests, input tokens, output tokens, instance seconds) that add up to
    # `usage` exactly; empty otherwise. Plain lists: a month may hold millions.
    accounts: dict[str, dict[UsageKey, list[int]]] = field(default_factory=dict)


def tally(
    files: Sequence[ScanFile],
    scans: Sequence[FileScan],
    fetch: Fetch,
    spec: ScanSpec,
    extra: Sequence[SetAside] = (),
) -> Tally:
    """The period's usage from the scans of `files` (scan.index indexes `files`); `fetch`
    reads the few lines that need a second look again (`formarket.usage.reader.fetch_lines`
    of each file); `extra` are files set aside before scanning."""
    duplicates, conflicts, taken_back = _settle_duplicates(files, scans, fetch, spec)
    # A subtraction can leave an all-zero entry; it would still be a (zero) line otherwise.
    totals = {
        key: sums
        for key, sums in merge([*(s.totals for s in scans), *taken_back]).named().items()
        if any(sums)
    }
    set_aside = sorted(
        [*extra, *(item for scan in scans for item in scan.set_aside)],
        key=lambda s: (s.file, s.line, s.code, s.message),
    )
    sums_of: dict[UsageKey, list[int]] = {}
    by_account: dict[str, dict[UsageKey, list[int]]] = {}
    counted = adjustments = before_count = later = not_charged = 0
    period = spec.new.period
    months: dict[int, str] = {}
    # In any order: only sums are taken, and the rating sorts what it rates.
    for (before, month, _, agent, model, ok, payer), sums in totals.items():
        events = sums[0]
        if before:
            before_count += events
            continue
        if month > period:
            later += events
            continue
        kind = "usage" if month == period else "adjustment"
        if month == period:
            counted += events
        else:
            adjustments += events
        if not ok:
            not_charged += events
            continue
        # An agent's event credits the agent alone: the model it runs with is credited by
        # the events of the calls it served (each model call is an event of its own).
        ref = agent if agent is not None else model
        if ref is not None and events:
            text = months.get(month)
            if text is None:
                text = months[month] = month_text(month)
            key = (kind, text, ref[0], ref[1])
            _add_into(sums_of, key, sums)
            if spec.by_account:
                _add_into(by_account.setdefault(payer, {}), key, sums)
    usage = {key: Quantities(*sums) for key, sums in sorted(sums_of.items())}
    counts = SummaryCounts(
        files=len(files),
        lines=sum(s.lines for s in scans),
        events=sum(s.events for s in scans),
        duplicates=duplicates,
        conflicts=len(conflicts),
        set_aside=len(set_aside),
        not_charged=not_charged,
        counted=counted,
        adjustments=adjustments,
        counted_before=before_count,
        later=later,
    )
    return Tally(usage, counts, tuple(conflicts), tuple(set_aside), by_account)


def _add_into(table: dict[UsageKey, list[int]], key: UsageKey, sums: Sums) -> None:
    """Add the quantities of `sums` (events to instance seconds) to `table[key]`."""
    found = table.get(key)
    if found is None:
        table[key] = sums[:5]
    else:
        found[:] = map(add, found, sums[:5])


Fetch = Callable[[Mapping[int, set[int]]], Iterable[tuple[int, int, WireEvent]]]


@dataclass(frozen=True, slots=True)
class _Copy:
    old: bool
    commit: int
    digest: bytes
    path: str
    line: int
    index: int
    event: WireEvent
    claim: bool = False  # set aside as too late: decides its event, counted nowhere


def _settle_duplicates(
    files: Sequence[ScanFile],
    scans: Sequence[FileScan],
    fetch: Fetch,
    spec: ScanSpec,
) -> tuple[int, list[UsageConflict], list[Totals]]:
    """How many copies were not counted, the conflicts among them, and the totals to take
    back (negated): of the copies counted that must not be."""
    groups: dict[tuple[str, str], list[_Copy]] = defaultdict(list)
    wanted, claimed = repeated_lines(scans)
    for index, number, item in fetch(wanted):
        scan_file = files[index]
        digest = canonical_digest(item)
        copy = _Copy(
            scan_file.old,
            scan_file.commit,
            digest,
            scan_file.file.path,
            number,
            index,
            item,
            (index, number) in claimed,
        )
        groups[(item.source, item.id)].append(copy)
    duplicates = 0
    conflicts: list[UsageConflict] = []
    # The copies counted that must not be, by file: taken back file by file, at once.
    taken_back: dict[int, list[_Copy]] = defaultdict(list)
    for (source, ident), copies in sorted(groups.items()):
        if len(copies) < 2:
            continue  # another key with the same digest
        copies.sort(key=lambda c: (not c.old, c.commit, c.path, c.line))
        kept, *others = copies
        if kept.claim and all(c.claim for c in others):
            continue  # no copy of it was counted: nothing to settle
        for other in others:
            # Copies the previous close had read were reported by it.
            duplicates += not other.old
            if not other.claim:  # else counted nowhere: nothing to take back
                taken_back[other.index].append(other)
        if any(c.digest != kept.digest and not c.old for c in others):
            named = [kept, *others]
            conflicts.append(
                UsageConflict(
                    source=source,
                    id=ident,
                    counted=f"{kept.path}:{kept.line}",
                    ignored=tuple(f"{c.path}:{c.line}" for c in others),
                    contents={
                        f"{c.path}:{c.line}": canonical_json(c.event).decode() for c in named
                    },
                )
            )
    negated = [
        totals_of(
            index,
            files[index].file,
            [c.event for c in others],
            [c.line for c in others],
            files[index].old,
            spec,
        ).negated()
        for index, others in sorted(taken_back.items())
    ]
    return duplicates, conflicts, negated
