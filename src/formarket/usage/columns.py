"""Checking and summing a file's events column by column, when every one of them counts.

The rules of an event are `reader.take_events`'s loop, which looks at one event at a time in
Python: a few microseconds an event, most of a cold close. Almost every file the collectors
write is clean, though: every line an event the close counts. `take_columns` proves that of a
whole file at once, each check over a column (in C: `map` over the decoded events, numpy) or
over the few distinct values a column holds (accounts, deployments, listing versions, months),
and sums the events by their keys with numpy. When any check fails for any event, it declines
and changes nothing, and the loop reads the file and says what is wrong where: so the loop
stays the one definition of what counts, and this only ever skips work whose result is known.

    take_columns     a file's events checked and summed at once, or None when the loop must
    add_pending      what either path found, into the file's scan
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt

from formarket.schemas.usage import CALL, MAX_COUNT, event_problem
from formarket.usage.digests import key_digests, padded_digests
from formarket.usage.files import UsageFile
from formarket.usage.lines import LineColumns, ref_of
from formarket.usage.scan import (
    FileScan,
    Lookup,
    ScanSpec,
    Sums,
    lookup_of,
)
from formarket.usage.totals import NO_PAYERS, Totals, merge
from formarket.usage.wire import (
    WireEvent,
    all_accounts_valid,
    all_ids_valid,
    all_subjects_valid,
    joined_accounts_valid,
    joined_ids_valid,
    joined_subjects_valid,
)

__all__ = ["COLUMNS_FROM", "PendingKey", "add_pending", "take_columns", "take_line_columns"]

# (counted before, month, day ordinal or 0, agent number, model number, outcome is ok,
# paying account or "")
PendingKey = tuple[bool, int, int, int, int, bool, str]

# Below this many events the loop is as quick as setting up the columns.
COLUMNS_FROM = 2
# Sums stay exact in int64 while events x the largest count fit in it.
_MOST_EVENTS = ((1 << 63) - 1) // MAX_COUNT

_TIME = attrgetter("time")
_SOURCE = attrgetter("source")
_ID = attrgetter("id")
_TYPE = attrgetter("type")
_SUBJECT = attrgetter("subject")
_DATA = attrgetter("data")
_ACCOUNT = attrgetter("account")
_AGENT = attrgetter("agent")
_MODEL = attrgetter("model")
_TZ = attrgetter("tzinfo")
_REQUESTS = attrgetter("requests")
_INPUT = attrgetter("input_tokens")
_OUTPUT = attrgetter("output_tokens")
_SECONDS = attrgetter("instance_seconds")
_OUTCOME = attrgetter("outcome")
_TOKENS = attrgetter("tokens_source")
_PARENT = attrgetter("parent")
_IS_CALL = CALL.__eq__
_IS_OK = "ok".__eq__
_IS_UPSTREAM = "upstream".__eq__


def _ints(values: Iterable[int], count: int) -> npt.NDArray[np.int64]:
    return np.fromiter(values, np.int64, count)


def _flags(values: Iterable[bool], count: int) -> npt.NDArray[np.bool_]:
    return np.fromiter(values, np.bool_, count)


def _numbers(refs: list[object], lookup: Lookup) -> npt.NDArray[np.int64] | None:
    """Each listing version's number (0 for none); None when one of them is not valid."""
    numbers = lookup.numbers
    found = list(map(numbers.get, refs))  # type: ignore[arg-type]
    if None in found:
        for ref in {r for r, n in zip(refs, found, strict=True) if n is None}:
            lookup.number_of(ref)  # type: ignore[arg-type]
        found = list(map(numbers.__getitem__, refs))  # type: ignore[arg-type]
    return _valid(found, lookup)


def _numbers_by_key(keys: list[str], lookup: Lookup) -> npt.NDArray[np.int64] | None:
    """`_numbers` of listing versions named by the C reader's keys, then 0 (for none)."""
    by_key = lookup.numbers_by_key
    found = list(map(by_key.get, keys))
    if None in found:
        numbers = lookup.numbers
        for position, number in enumerate(found):
            if number is None:
                ref = ref_of(keys[position])
                known = numbers.get(ref)
                found[position] = by_key[keys[position]] = (
                    lookup.number_of(ref) if known is None else known
                )
    found.append(0)
    return _valid(found, lookup)


def _valid(numbers: Sequence[int | None], lookup: Lookup) -> npt.NDArray[np.int64] | None:
    """`numbers` (every one found by now) as an array, or None when one of them names a
    listing version that is not valid."""
    out = np.array(numbers, dtype=np.int64)
    return None if lookup.problem_array()[out].any() else out


def _patterns_hold(tokens_sources: set[str], parents: set[object]) -> bool:
    """The strings `event_problem` checks against a pattern hold to it, each checked once.
    The loop checks them on every call; any bad one at all sends the file to the loop,
    which knows which events it decides."""
    for tokens_source in tokens_sources:
        probe = SimpleNamespace(
            agent=True, model=None, tokens_source=tokens_source, parent=None, instance_seconds=0
        )
        if event_problem(CALL, probe):
            return False
    return all_ids_valid([p for p in parents if isinstance(p, str)])


@dataclass(frozen=True, slots=True)
class _Columns:
    """A file's events by field, as the checks and sums below take them, from either reader:
    msgspec's events (`take_columns`) or the C reader's columns (`take_line_columns`)."""

    count: int
    latest: datetime | None  # the latest time; None when a time is not in UTC
    ordinals: Callable[[], npt.NDArray[np.int64]]  # each event's day (date.toordinal)
    sources: set[str]
    ids_valid: Callable[[], bool]
    accounts_valid: Callable[[], bool]  # every account matches its pattern
    subjects_valid: Callable[[], bool]
    agents: Callable[[Lookup], npt.NDArray[np.int64] | None]  # _numbers of the agents
    models: Callable[[Lookup], npt.NDArray[np.int64] | None]
    tokens_sources: set[str]
    parents: set[object]
    is_call: Callable[[], npt.NDArray[np.bool_]]
    requests: Callable[[], npt.NDArray[np.int64]]
    inputs: Callable[[], npt.NDArray[np.int64]]
    outputs: Callable[[], npt.NDArray[np.int64]]
    seconds: Callable[[], npt.NDArray[np.int64]]
    ok: Callable[[], npt.NDArray[np.bool_]]
    upstream: Callable[[], npt.NDArray[np.bool_]]  # tokens_source is "upstream"
    payers: Callable[[Lookup], npt.NDArray[np.int64]]  # each event's account number
    digests: Callable[[int], npt.NDArray[np.int64]]  # the key digests, by seed


def take_columns(
    scan: FileScan,
    file: UsageFile,
    events: Sequence[WireEvent],
    lines: Sequence[int] | None,
    old: bool,
    spec: ScanSpec,
) -> bool:
    """Check and sum `events` (as `take_events`) when every one of them counts: True when
    done, False (with `scan` untouched) when the loop must read them."""
    count = len(events)
    if count < COLUMNS_FROM or count > _MOST_EVENTS:
        return False
    times = list(map(_TIME, events))
    datas = list(map(_DATA, events))
    # Aware and naive times do not compare: the zones are checked first.
    latest = max(times) if set(map(_TZ, times)) == {UTC} else None
    ids = list(map(_ID, events))
    accounts = list(map(_ACCOUNT, datas))
    columns = _Columns(
        count=count,
        latest=latest,
        ordinals=lambda: _ints(map(datetime.toordinal, times), count),
        sources=set(map(_SOURCE, events)),
        ids_valid=lambda: all_ids_valid(ids),
        accounts_valid=lambda: all_accounts_valid(list(set(accounts))),
        subjects_valid=lambda: all_subjects_valid(list(set(map(_SUBJECT, events)))),
        agents=lambda lookup: _numbers(list(map(_AGENT, datas)), lookup),
        models=lambda lookup: _numbers(list(map(_MODEL, datas)), lookup),
        tokens_sources=set(map(_TOKENS, datas)),
        parents=set(map(_PARENT, datas)),
        is_call=lambda: _flags(map(_IS_CALL, map(_TYPE, events)), count),
        requests=lambda: _ints(map(_REQUESTS, datas), count),
        inputs=lambda: _ints(map(_INPUT, datas), count),
        outputs=lambda: _ints(map(_OUTPUT, datas), count),
        seconds=lambda: _ints(map(_SECONDS, datas), count),
        ok=lambda: _flags(map(_IS_OK, map(_OUTCOME, datas)), count),
        upstream=lambda: _flags(map(_IS_UPSTREAM, map(_TOKENS, datas)), count),
        payers=lambda lookup: _ints(map(lookup.account_number, accounts), count),
        digests=lambda seed: key_digests(file.source, ids, seed),
    )
    return _take(scan, file, columns, lines, old, spec)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_DAY_MICROS = 86_400_000_000


def take_line_columns(
    scan: FileScan, file: UsageFile, read: LineColumns, old: bool, spec: ScanSpec
) -> bool:
    """`take_columns` of a file the C reader read (`formarket.usage.lines`), every line an
    event: True when done, False (with `scan` untouched) when msgspec and the loop must read
    it."""
    count = read.count
    if count < COLUMNS_FROM or count > _MOST_EVENTS:
        return False

    numbered: list[npt.NDArray[np.int64] | None] = []

    def refs(codes: npt.NDArray[np.int32]) -> Callable[[Lookup], npt.NDArray[np.int64] | None]:
        def numbers(lookup: Lookup) -> npt.NDArray[np.int64] | None:
            # Each distinct listing version once, then by each event's code (-1: none).
            if not numbered:
                numbered.append(_numbers_by_key(read.refs, lookup))
            found = numbered[0]
            return None if found is None else found[codes]

        return numbers

    columns = _Columns(
        count=count,
        latest=_EPOCH + timedelta(microseconds=int(read.micros.max())),
        ordinals=lambda: read.micros // _DAY_MICROS + _EPOCH_ORDINAL,
        sources=set(read.sources),
        ids_valid=lambda: joined_ids_valid(read.ids_joined, count),
        accounts_valid=lambda: (
            all_accounts_valid(read.accounts)
            if read.accounts_joined is None
            else joined_accounts_valid(read.accounts_joined, count)
        ),
        subjects_valid=lambda: joined_subjects_valid(read.subjects_joined, count),
        agents=refs(read.agent_codes),
        models=refs(read.model_codes),
        tokens_sources=set(read.tokens),
        parents=set(read.parents),
        is_call=lambda: read.calls,
        requests=lambda: read.requests,
        inputs=lambda: read.inputs,
        outputs=lambda: read.outputs,
        seconds=lambda: read.seconds,
        ok=lambda: read.oks,
        upstream=lambda: np.array(list(map(_IS_UPSTREAM, read.tokens)), np.bool_)[read.token_codes],
        payers=lambda lookup: np.array([lookup.account_number(a) for a in read.accounts], np.int64)[
            read.account_codes
        ],
        digests=lambda seed: padded_digests(file.source, read.id_words, read.id_lengths, seed),
    )
    return _take(scan, file, columns, None, old, spec)


def _take(
    scan: FileScan,
    file: UsageFile,
    columns: _Columns,
    lines: Sequence[int] | None,
    old: bool,
    spec: ScanSpec,
) -> bool:
    count = columns.count
    new_rules = spec.new
    old_rules = spec.old if old and spec.old is not None else None
    settled = old_rules.period if old_rules is not None else -1
    skew = old_rules.skew if old_rules is not None else new_rules.skew
    limit = datetime.combine(file.day + timedelta(days=1), time(), UTC) + skew
    source = file.source

    # The line's own checks (USG006, USG007, USG010): UTC, not after the file's day, the
    # file's source.
    if columns.latest is None or columns.latest >= limit:
        return False
    if columns.sources != {source}:
        return False

    # The patterns of the strings (USG005): the ids, accounts and deployments all at once,
    # each listing version once.
    lookup = lookup_of(spec)
    if not columns.ids_valid():
        return False
    if not columns.accounts_valid():
        return False
    if not columns.subjects_valid():
        return False
    agents = columns.agents(lookup)
    models = columns.models(lookup)
    if agents is None or models is None:
        return False

    # The data's consistency with the event's type (USG011) and the ceilings (USG018).
    if not _patterns_hold(columns.tokens_sources, columns.parents):
        return False
    is_call = columns.is_call()
    requests = columns.requests()
    inputs = columns.inputs()
    outputs = columns.outputs()
    seconds = columns.seconds()
    counted = (requests != 0) | (inputs != 0) | (outputs != 0)
    inconsistent = np.where(is_call, seconds != 0, (seconds <= 0) | counted)
    if bool(np.any(inconsistent)) or bool(np.any((agents == 0) & (models == 0))):
        return False
    max_requests, max_input, max_output, max_seconds = (old_rules or new_rules).ceilings
    if (
        int(requests.max()) > max_requests
        or int(inputs.max()) > max_input
        or int(outputs.max()) > max_output
        or int(seconds.max()) > max_seconds
    ):
        return False

    # Each event's day, by the days that occur (a file holds one or two), and its month.
    days, day_of = np.unique(columns.ordinals(), return_inverse=True)
    day_list = days.tolist()
    months = [d.year * 12 + d.month - 1 for d in map(date.fromordinal, day_list)]
    for index, month in enumerate(months):
        before = month <= settled
        rules = old_rules if before and old_rules is not None else new_rules
        if month < rules.first:
            return False  # too late (USG013): a claim, which the loop records
        if month <= rules.period:
            known = lookup.known_array(old=before)
            on_day = slice(None) if len(months) == 1 else day_of == index
            if not (known[agents[on_day]].all() and known[models[on_day]].all()):
                return False  # a listing version not published then (USG008, USG009)

    # Sums by (day or month, agent, model, outcome is ok, payer): rows of numbers, each key
    # once; named once per reading, not per file (a file of 25,000 events can hold 10,000
    # pairs of listing versions).
    buckets = [
        (month <= settled, month, day if spec.by_day else 0)
        for month, day in zip(months, day_list, strict=True)
    ]
    payers = columns.payers(lookup) if spec.by_account else np.zeros(count, np.int64)
    keys = np.vstack(
        (np.array(buckets, np.int64).T[:, day_of], agents, models, columns.ok(), payers)
    ).astype(np.int64, copy=False)
    measured = ~columns.upstream() & (requests != 0)
    sums = np.vstack(
        (np.ones(count, np.int64), requests, inputs, outputs, seconds, measured)
    ).astype(np.int64, copy=False)
    found = Totals.summed(
        lookup.names, lookup.account_names if spec.by_account else NO_PAYERS, keys, sums
    )
    scan.events += count
    if lines is None:
        scan.line_numbers.frombytes(np.arange(1, count + 1, dtype=np.uintc).tobytes())
    else:
        scan.line_numbers.extend(lines)
    scan.digests.frombytes(columns.digests(spec.seed).tobytes())
    scan.totals = merge([scan.totals, found]) if len(scan.totals) else found
    return True


def add_digests(
    scan: FileScan, source: str, counted_ids: list[str], claimed_ids: list[str], seed: int
) -> None:
    """The key digests of the events counted and of those that claim their key."""
    scan.digests.frombytes(key_digests(source, counted_ids, seed).tobytes())
    scan.claims.frombytes(key_digests(source, claimed_ids, seed).tobytes())


def add_pending(
    scan: FileScan,
    pending: dict[PendingKey, Sums],
    lookup: Lookup,
    counted_ids: list[str],
    claimed_ids: list[str],
    source: str,
    spec: ScanSpec,
) -> None:
    """The counted events' key digests, the claims', and the totals by listing version."""
    add_digests(scan, source, counted_ids, claimed_ids, spec.seed)
    if not pending:
        return
    payer = lookup.account_number if spec.by_account else _no_payer
    rows = [
        (before, month, day, a, m, ok, payer(account))
        for before, month, day, a, m, ok, account in pending
    ]
    # Each key once already: a dictionary's.
    found = Totals(
        lookup.names,
        lookup.account_names if spec.by_account else NO_PAYERS,
        np.array(rows, np.int64).T.copy(),
        np.array(list(pending.values()), np.int64).T.copy(),
    )
    scan.totals = merge([scan.totals, found]) if len(scan.totals) else found


def _no_payer(account: str) -> int:
    return 0
