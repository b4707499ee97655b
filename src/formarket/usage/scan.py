"""What a reading of usage files is given and gives back: its rules, the files it reads, and
what each file holds (totals, event key digests, set-aside lines).

    Rules, ScanSpec     what a reading accepts (a close's period and listings, the clock skew)
    ScanFile            a file to read, and where its commit stands
    FileScan            what one file holds, once read
    Lookup              what the readings of one process remember about recurring values
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from formarket.schemas.usage import SetAside, UsageCeilings
from formarket.usage.files import UsageFile
from formarket.usage.totals import Sums, Totals, TotalsKey
from formarket.usage.wire import WireEvent, WireRef, ref_problem

__all__ = [
    "FileScan",
    "Lookup",
    "Rules",
    "ScanFile",
    "ScanSpec",
    "Sums",
    "Totals",
    "TotalsKey",
    "lookup_of",
]


@dataclass(frozen=True, slots=True)
class Rules:
    """What a reading accepts: the period a close judges, the oldest period late usage may
    still belong to, the listing versions published as of its usage commit, and how far past
    its file's day an event's time may be (the platform's terms, royalties/policy.yaml)."""

    period: int
    first: int
    known: frozenset[tuple[str, str]]
    skew: timedelta
    listings: frozenset[str] = frozenset()  # the ids in `known`, to tell USG008 from USG009
    # The most one event may hold (requests, input tokens, output tokens, instance seconds):
    # what no gateway can produce is set aside (USG018), never paid.
    ceilings: tuple[int, int, int, int] = (
        UsageCeilings().requests,
        UsageCeilings().input_tokens,
        UsageCeilings().output_tokens,
        UsageCeilings().instance_seconds,
    )


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """The rules for files new since the previous close, and those of the previous close for
    the files it had already read (`old`): a line's fate was decided by the close that first
    read it, and is never decided differently later. `seed` keys the digests of events'
    (source, id) (`formarket.usage.columns.key_digests`); `by_day` sums events per day of
    their time as well as per month (a reading for charts and `usage show`, not a close);
    `by_account` per paying account as well (a close that writes the accounts' invoices)."""

    new: Rules
    old: Rules | None
    seed: int = 0
    by_day: bool = False
    by_account: bool = False


@dataclass(frozen=True, slots=True)
class ScanFile:
    """A file to read, whether the previous close read it already (`old`), and where the
    commit that brought it stands in the first-parent history (`commit`): of two copies of
    an event, the first committed counts."""

    file: UsageFile
    old: bool
    commit: int = 0


@dataclass(slots=True)
class FileScan:
    """What one file holds: totals, and a key digest and line per event counted; with
    `keep`, the events counted themselves (`accepted`)."""

    index: int
    lines: int = 0
    events: int = 0
    set_aside: list[SetAside] = field(default_factory=list)
    digests: array[int] = field(default_factory=lambda: array("q"))
    line_numbers: array[int] = field(default_factory=lambda: array("I"))
    # Events set aside as too late: not counted, but the first committed copy of an event
    # decides it, so a later copy of one of these is never counted either.
    claims: array[int] = field(default_factory=lambda: array("q"))
    claim_lines: array[int] = field(default_factory=lambda: array("I"))
    totals: Totals = field(default_factory=Totals.empty)
    accepted: list[WireEvent] = field(default_factory=list)
    # Lines already read while the file's bytes were at hand (line number -> the line), for
    # the second look at events seen more than once; never kept in the cache.
    early: dict[int, bytes] = field(default_factory=dict)


class Lookup:
    """What the hot loop needs to know about values that recur, kept across the files of one
    close (a worker reads many): each listing version gets a small number (0 for none), so the
    loop hashes ints rather than structs or tuples, and each account and deployment is checked
    against its pattern once."""

    def __init__(self, spec: ScanSpec) -> None:
        self.spec = spec
        self.numbers: dict[WireRef | None, int] = {None: 0}
        # The same numbers by the C reader's names of listing versions (formarket.usage.lines)
        self.numbers_by_key: dict[str, int] = {}
        self.names: list[tuple[str, str] | None] = [None]
        self.problems: list[str] = [""]
        self.known_new: list[bool] = [True]
        self.known_old: list[bool] = [True]
        self.accounts: set[str] = set()
        self.subjects: set[str] = set()
        self.sources: set[str] = set()  # tokens_source values checked against their pattern
        # With `by_account`, each paying account's number, as listing versions have theirs.
        self.account_numbers: dict[str, int] = {}
        self.account_names: list[str] = []
        # The lists of listing versions above, as arrays (`_array`).
        self._arrays: dict[str, npt.NDArray[np.bool_]] = {}

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

    def problem_array(self) -> npt.NDArray[np.bool_]:
        """Whether each listing version has a problem, as an array."""
        return self._array("problems", self.problems)

    def known_array(self, *, old: bool) -> npt.NDArray[np.bool_]:
        """`known_old` (or `known_new`) as an array, to index by a column of numbers."""
        return self._array("old" if old else "new", self.known_old if old else self.known_new)

    def _array(self, name: str, values: list[str] | list[bool]) -> npt.NDArray[np.bool_]:
        # The lists only grow: only what was appended since is added.
        cached = self._arrays.get(name, _NONE)
        if len(cached) != len(values):
            more = np.array([bool(v) for v in values[len(cached) :]], np.bool_)
            cached = self._arrays[name] = np.concatenate((cached, more))
        return cached

    def account_number(self, account: str) -> int:
        number = self.account_numbers.get(account)
        if number is None:
            number = self.account_numbers[account] = len(self.account_names)
            self.account_names.append(account)
        return number

    def size(self) -> int:
        return (
            len(self.names)
            + len(self.numbers_by_key)
            + len(self.accounts)
            + len(self.subjects)
            + len(self.account_names)
        )


_NONE = np.zeros(0, np.bool_)


# One close at a time per process; a hostile log of endless distinct values cannot grow it
# past this many entries.
_LOOKUP_LIMIT = 1 << 21
_LOOKUP: list[Lookup] = []


def lookup_of(spec: ScanSpec) -> Lookup:
    if not _LOOKUP or _LOOKUP[0].spec is not spec or _LOOKUP[0].size() > _LOOKUP_LIMIT:
        _LOOKUP[:] = [Lookup(spec)]
    return _LOOKUP[0]
