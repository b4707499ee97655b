"""A reading's sums by group, as columns: kept per file, merged per close, named once.

A file of 25,000 events can hold 10,000 groups (pairs of listing versions), and a month
hundreds of such files. Each group named as a tuple of tuples, added into a dictionary per
file, per batch and per close, and pickled between processes cost more than reading the
events. Here a group is one row of small integers, the listing versions and the paying
accounts numbered by the tables the rows point into, so that merging many files' totals is a
concatenation, one sort and one `reduceat`; names are looked up once per close (`named`).

Inside one process the rows of every file point into the same tables (the reading's
`Lookup`, which only grows), and merging them needs no renumbering. A `Totals` that leaves its
process (pickled into the cache or to the close) takes only the names its rows use.

    Totals      the sums of a reading, by group
    merge       many totals as one, each group once
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from formarket.errors import FormarketError

__all__ = ["KEYS", "NO_PAYERS", "SUMS", "Name", "Sums", "Totals", "TotalsKey", "merge"]

Name = tuple[str, str] | None
# (counted before, month index, day (a date's ordinal with `by_day`, else 0), agent (id,
# version), model (id, version), outcome is ok, paying account (with `by_account`, else ""))
TotalsKey = tuple[bool, int, int, Name, Name, bool, str]
# events, requests, input tokens, output tokens, instance seconds, calls whose tokens the
# gateway counted (tokens_source other than upstream, at least one request)
Sums = list[int]
SUMS = 6

# The columns of a row's key: counted before (0 or 1), month, day, agent and model (numbers
# in `names`), outcome is ok (0 or 1), paying account (a number in `payers`).
KEYS = 7
_AGENT, _MODEL, _PAYER = 3, 4, 6
_NO_NAMES: list[Name] = [None]
# The payers of a reading that is not by account: every row's is 0, "".
NO_PAYERS: list[str] = [""]

Table = npt.NDArray[np.int64]
_T = TypeVar("_T")
_INT32 = np.iinfo(np.int32)
# Below 2**63 with room for the rounding of a sum of floats.
_SAFE = float(1 << 62)


@dataclass(slots=True)
class Totals:
    """Sums by group, column by column (each column contiguous): row i's key is keys[:, i]
    (KEYS columns) and its sums are sums[:, i] (SUMS columns); its agent and model are
    names[...] and its paying account payers[...]. A row may repeat a key (until `merge`)
    and may sum to zero (a subtraction's result)."""

    names: list[Name]
    payers: list[str]
    keys: Table
    sums: Table

    @staticmethod
    def empty() -> Totals:
        return Totals(
            _NO_NAMES, NO_PAYERS, np.zeros((KEYS, 0), np.int64), np.zeros((SUMS, 0), np.int64)
        )

    @staticmethod
    def summed(names: list[Name], payers: list[str], keys: Table, sums: Table) -> Totals:
        """The totals of rows that may repeat a key, each key once."""
        return Totals(names, payers, *_reduce(keys, sums))

    def __len__(self) -> int:
        return int(self.keys.shape[1])

    def negated(self) -> Totals:
        return Totals(self.names, self.payers, self.keys, -self.sums)

    def named(self) -> dict[TotalsKey, Sums]:
        """Each group by its names (merged first: each key once), with its sums."""
        merged = merge([self])
        names, payers = merged.names, merged.payers
        keys = merged.keys.tolist()
        rows = zip(
            map(bool, keys[0]),
            keys[1],
            keys[2],
            map(names.__getitem__, keys[_AGENT]),
            map(names.__getitem__, keys[_MODEL]),
            map(bool, keys[5]),
            map(payers.__getitem__, keys[_PAYER]),
            strict=True,
        )
        return dict(zip(rows, map(list, zip(*merged.sums.tolist(), strict=True)), strict=True))

    def compact(self) -> Totals:
        """The same totals with only the names their rows use: what leaves the process."""
        keys = self.keys.copy()
        names = _renumbered(keys[_AGENT : _MODEL + 1], self.names)
        payers = _renumbered(keys[_PAYER], self.payers)
        return Totals(names, payers, keys, self.sums)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (into the cache, to the close's process) with its own names only, never
        # with the whole table of its process, and in 32-bit integers where they fit: half
        # the bytes to write, seal and read for nearly every file.
        small = self.compact()
        return (_unpickled, (small.names, small.payers, _narrow(small.keys), _narrow(small.sums)))


def _narrow(table: Table) -> npt.NDArray[np.signedinteger[Any]]:
    if len(table.ravel()) and not (_INT32.min <= table.min() and table.max() <= _INT32.max):
        return table
    return table.astype(np.int32)


def _unpickled(
    names: list[Name], payers: list[str], keys: npt.NDArray[Any], sums: npt.NDArray[Any]
) -> Totals:
    return Totals(names, payers, keys.astype(np.int64), sums.astype(np.int64))


def merge(parts: Sequence[Totals]) -> Totals:
    """The totals of `parts` as one, each key once (zero sums kept)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Totals.empty()
    first = parts[0]
    if all(p.names is first.names and p.payers is first.payers for p in parts):
        names, payers = first.names, first.payers
        keys = np.concatenate([p.keys for p in parts], axis=1)
    else:
        parts = [p.compact() for p in parts]
        names, name_numbers = _union([p.names for p in parts])
        payers, payer_numbers = _union([p.payers for p in parts])
        keys = np.concatenate([p.keys for p in parts], axis=1)
        start = 0
        for part, renamed, repaid in zip(parts, name_numbers, payer_numbers, strict=True):
            rows = keys[:, start : start + len(part)]
            rows[_AGENT : _MODEL + 1] = renamed[rows[_AGENT : _MODEL + 1]]
            rows[_PAYER] = repaid[rows[_PAYER]]
            start += len(part)
    sums = np.concatenate([p.sums for p in parts], axis=1)
    keys, sums = _reduce(keys, sums)
    return Totals(names, payers, keys, sums)


def _within_int64(sums: Table) -> None:
    """Refuse sums that 64-bit integers might not hold, rather than let them wrap. Each
    event's counts are at most 10**12 (the schema's bound), so this takes over nine million
    such events in one group: a month no gateway produces, but one a policy's ceilings allow."""
    if not sums.size:
        return
    most = float(np.abs(sums).max())
    if (
        most * sums.shape[1] < _SAFE
        or float(np.abs(sums).sum(axis=1, dtype=np.float64).max()) < _SAFE
    ):
        return
    raise FormarketError(
        "usage sums past what 64-bit integers hold: more than nine million events of"
        " 10**12 tokens each in one listing version",
        hint="lower the ceilings of royalties/policy.yaml; no gateway produces such events",
    )


def _renumbered(numbers: Table, table: list[_T]) -> list[_T]:
    """The values of `table` that `numbers` use, in order; `numbers` renumbered in place to
    point into that list. (A mark per value of the table rather than a sort of the numbers:
    the table of a process is tens of thousands long, a file's numbers as many.)"""
    used = np.zeros(len(table), np.bool_)
    used[numbers] = True
    places = np.flatnonzero(used)
    numbers[...] = (np.cumsum(used) - 1)[numbers]
    return list(map(table.__getitem__, places.tolist()))


def _union(tables: Sequence[list[_T]]) -> tuple[list[_T], list[Table]]:
    """One table of every value of `tables`, and each table's numbers in it."""
    index: dict[_T, int] = {}
    numbers = [
        np.fromiter((index.setdefault(v, len(index)) for v in table), np.int64, len(table))
        for table in tables
    ]
    return list(index), numbers


def _reduce(keys: Table, sums: Table) -> tuple[Table, Table]:
    """Each distinct key of `keys` once, with the sums of its rows, in key order."""
    if keys.shape[1] < 2:
        return keys, sums
    low = keys.min(axis=1)
    spans = (keys.max(axis=1) - low + 1).tolist()
    if prod(spans) < 1 << 62:
        # One int64 per row (mixed radix over the columns' ranges): one sort of integers.
        composite = np.zeros(keys.shape[1], np.int64)
        for column, span in enumerate(spans):
            if span > 1:  # a column of one value (most of them, in a file) adds nothing
                composite *= span
                composite += keys[column] - low[column]
        order = np.argsort(composite)
        ordered = composite[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    else:
        order = np.lexsort(keys[::-1])
        ordered_keys = keys[:, order]
        changed = np.any(ordered_keys[:, 1:] != ordered_keys[:, :-1], axis=0)
        starts = np.flatnonzero(np.concatenate(([True], changed)))
    _within_int64(sums)
    # Column by column: numpy's gathers and reduceat along one contiguous row are several
    # times quicker than along an axis of a 2-d array.
    firsts = order[starts]
    return (
        np.vstack([np.take(column, firsts) for column in keys]),
        np.vstack([np.add.reduceat(np.take(column, order), starts) for column in sums]),
    )
