"""Reading many usage files on every core, each at most once per set of rules.

What a file holds is kept in the cache by its blob id (`partials`): a file read before with
the same rules is taken from there, and only the others are read. Worker processes open the
repository themselves and read each file's blob by id, so only ids go out and compact scans
come back; each worker keeps what it read in the cache itself. The same workers then read
again the few lines that need a second look. An in-memory repository, or a handful of files,
is read in this process: a pool costs more than it saves there. Each collector's files are
read in order, and the lines a file shares with the collector's previous one (its retried
flush) are taken while both are at hand (`_Neighbours`), so the second look reads again only
the few files whose lines were not.

    Scanner          the files' scans, then the lines asked for again
    repeated_lines   which lines hold an event whose key digest occurs more than once
"""

from __future__ import annotations

import gc
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo, Repo

from formarket.market.repository import open_repository
from formarket.market.trees import read_blob
from formarket.usage.partials import PartialStore
from formarket.usage.reader import FileLines, events_on, fetch_lines, read_file
from formarket.usage.scan import FileScan, ScanFile, ScanSpec
from formarket.usage.totals import Totals, merge
from formarket.usage.wire import WireEvent

__all__ = ["Progress", "Scanner", "repeated_lines"]

# (files done, files in all, events so far)
Progress = Callable[[int, int, int], None]

# Below this much compressed usage, reading here is quicker than starting workers.
_PARALLEL_FROM = 16 << 20

_worker: tuple[Repo, ScanSpec, PartialStore | None] | None = None


def _init(path: str, spec: ScanSpec, store: PartialStore | None) -> None:
    global _worker
    _worker = (open_repository(path, search_up=False), spec, store)


def _read(
    repo: BaseRepo,
    spec: ScanSpec,
    store: PartialStore | None,
    index: int,
    item: ScanFile,
    blob: ObjectID,
) -> tuple[FileScan, FileLines | None]:
    scan, lines = read_file(index, item.file, read_blob(repo, blob), item.old, spec)
    if store is not None:
        store.put_scan(blob.decode(), item, scan)
    return scan, lines


# The bytes of the latest files kept for a look at the next file of the same collector.
_NEIGHBOURS_BYTES = 96 << 20
# The lines taken early by one batch of files, at most: they travel to the close's process and
# stay there until the second look. (A month's repeated events are a few thousandths of it; a
# collector that sends everything twice would otherwise send its month to the close again.)
_EARLY_BYTES = 8 << 20


class _Neighbours:
    """The latest file read of each collector, its bytes kept until its next file is read.

    A collector that gets no answer to a flush sends its events again in its next file, so
    nearly every event seen twice in a month is in two files of one collector, one after the
    other. The lines they share (by key digest) are taken from both while their bytes are at
    hand (`FileScan.early`): the second look then reads those files again only for the lines
    it wants that are not there. It decides nothing: which events repeat, and which copy
    counts, is still settled over every file's digests."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[FileScan, FileLines]] = {}
        self.size = 0
        self.taken = 0  # bytes of lines taken early

    def add(self, source: str, scan: FileScan, lines: FileLines | None) -> None:
        before = self.latest.pop(source, None)
        if before is not None:
            self.size -= len(before[1].raw)
            if lines is not None and self.taken < _EARLY_BYTES:
                self.taken += _take_shared(*before, scan, lines)
        if lines is None or len(lines.raw) > _NEIGHBOURS_BYTES:
            return
        self.latest[source] = (scan, lines)
        self.size += len(lines.raw)
        while self.size > _NEIGHBOURS_BYTES:
            _, oldest = self.latest.pop(next(iter(self.latest)))
            self.size -= len(oldest.raw)


# A table of this many low bits of the digests passes about one in a hundred of the others
# on to the exact comparison.
_LOW_BITS = 20


class _LowBits:
    """Which low bits (the last `bits`) some digests have, as a table: a cheap first sieve
    before comparing digests exactly, which lets through only the few that may match."""

    def __init__(self, digests: npt.NDArray[np.int64], bits: int) -> None:
        self.mask = (1 << bits) - 1
        self.table = np.zeros(1 << bits, np.bool_)
        self.table[digests & self.mask] = True

    def refill(self, digests: npt.NDArray[np.int64]) -> None:
        """The table of other digests, in the same memory."""
        self.table[:] = False
        self.table[digests & self.mask] = True

    def maybe(self, digests: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """The positions of `digests` whose low bits are in the table."""
        return np.flatnonzero(self.table[digests & self.mask])


def _take_shared(first: FileScan, first_lines: FileLines, then: FileScan, lines: FileLines) -> int:
    """The lines of `first` and `then` whose events have a key digest in common, into each
    one's `early`; returns their bytes."""
    one = np.frombuffer(first.digests, np.int64)
    other = np.frombuffer(then.digests, np.int64)
    if not len(one) or not len(other):
        return 0
    sieve = _LowBits(one, _LOW_BITS)
    maybe_other = sieve.maybe(other)
    sieve.refill(other[maybe_other])
    maybe_one = sieve.maybe(one)
    _, in_one, in_other = np.intersect1d(one[maybe_one], other[maybe_other], return_indices=True)
    taken = 0
    for scan, file_lines, positions in (
        (first, first_lines, maybe_one[in_one]),
        (then, lines, maybe_other[in_other]),
    ):
        numbers = scan.line_numbers
        for position in positions.tolist():
            number = numbers[position]
            scan.early[number] = found = file_lines[number]
            taken += len(found)
    return taken


# Rows of totals gathered before they are merged: each file's rows are kept until then.
_MERGE_ROWS = 1 << 18


class _Summing:
    """Totals of many files, merged once the rows gathered since the last merge are as many
    as it left (and at least _MERGE_ROWS), rather than file by file: each row is then merged
    a few times at most, however many groups the month holds (by day and by account, a
    month's totals hold millions)."""

    def __init__(self) -> None:
        self.parts: list[Totals] = []
        self.rows = 0
        self.merged = 0  # the rows the last merge left

    def add(self, totals: Totals) -> None:
        self.parts.append(totals)
        self.rows += len(totals)
        if self.rows - self.merged >= max(_MERGE_ROWS, self.merged):
            self.parts = [merge(self.parts)]
            self.rows = self.merged = len(self.parts[0])

    def total(self) -> Totals:
        return merge(self.parts)


def _scan_batch(
    batch: list[tuple[int, ScanFile, ObjectID]],
) -> tuple[list[tuple[int, FileScan]], Totals]:
    """Scan a batch of files; their totals come back summed once, not file by file (each
    file's totals hold a row per pair of listing versions: sending them one file at a time
    costs more than summing them here)."""
    assert _worker is not None
    repo, spec, store = _worker
    scans = []
    summing = _Summing()
    neighbours = _Neighbours()
    # Reading makes no cycles to collect, and the collector's passes over what it keeps
    # would cost time.
    gc.disable()
    try:
        for index, item, blob in batch:
            scan, lines = _read(repo, spec, store, index, item, blob)
            neighbours.add(item.file.source, scan, lines)
            summing.add(scan.totals)
            scan.totals = Totals.empty()
            scans.append((index, scan))
    finally:
        gc.enable()
    return scans, summing.total()


def _fetch(index: int, blob: ObjectID, lines: set[int]) -> list[tuple[int, int, WireEvent]]:
    assert _worker is not None
    return fetch_lines(index, read_blob(_worker[0], blob), lines)


def _stored_size(repo: BaseRepo, blobs: Sequence[ObjectID]) -> int:
    """About how many bytes the blobs take in git: a loose object's file size (cheap to
    get, unlike its content); a packed one counts as large."""
    if not isinstance(repo, Repo):
        return 0
    objects = Path(repo.controldir()) / "objects"
    total = 0
    for blob in blobs:
        name = blob.decode()
        try:
            total += (objects / name[:2] / name[2:]).stat().st_size
        except OSError:
            total += 1 << 20
    return total


class Scanner:
    """Scans `files` (files[i] is stored in blobs[i]) of `repo` with `spec`, taking what
    `store` kept of earlier readings and keeping what it reads there; a context manager, so
    that its workers stop when it is done."""

    def __init__(
        self,
        repo: BaseRepo,
        files: Sequence[ScanFile],
        blobs: Sequence[ObjectID],
        spec: ScanSpec,
        *,
        jobs: int | None = None,
        store: PartialStore | None = None,
    ) -> None:
        self.repo = repo
        self.files = files
        self.blobs = blobs
        self.spec = spec
        self.store = store
        self.kept: dict[int, FileScan] = {}
        # Lines read early, by file index (FileScan.early), for `fetch`.
        self.early: dict[int, dict[int, bytes]] = {}
        if store is not None:
            for i, (item, blob) in enumerate(zip(files, blobs, strict=True)):
                found = store.get_scan(i, blob.decode(), item)
                if found is not None:
                    self.kept[i] = found
        self.todo = [i for i in range(len(files)) if i not in self.kept]
        self.pool: Executor | None = None
        self.jobs = jobs or len(os.sched_getaffinity(0)) or 1
        # Asked for several jobs, use them; by default, only when there is enough to read.
        wanted = jobs is not None or _stored_size(repo, [blobs[i] for i in self.todo]) >= (
            _PARALLEL_FROM
        )
        if wanted and self.jobs > 1 and len(self.todo) > 1 and isinstance(repo, Repo):
            self.pool = ProcessPoolExecutor(
                max_workers=min(self.jobs, len(self.todo)),
                mp_context=get_context("fork"),
                initializer=_init,
                initargs=(repo.path, spec, store),
            )

    def __enter__(self) -> Scanner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def scan(self, progress: Progress | None = None) -> list[FileScan]:
        """Every file's scan, in file order, with the totals of all files summed into the
        first: a file's own totals would otherwise pile up to gigabytes over a month."""
        total = len(self.files)
        results: list[FileScan | None] = [None] * total
        summing = _Summing()
        done = events = 0
        for scans, batch_totals in self._batches():
            summing.add(batch_totals)
            for index, scan in scans:
                summing.add(scan.totals)
                scan.totals = Totals.empty()
                results[index] = scan
                events += scan.events
                done += 1
            if progress:
                progress(done, total, events)
        out = [r for r in results if r is not None]
        assert len(out) == total
        # Taken only now: a file's lines shared with the next one are added as that is read.
        for scan in out:
            if scan.early:
                self.early[scan.index], scan.early = scan.early, {}
        if out:
            out[0].totals = summing.total()
        return out

    def _batches(
        self,
    ) -> Iterable[tuple[list[tuple[int, FileScan]], Totals]]:
        if self.kept:
            yield sorted(self.kept.items()), Totals.empty()
        if self.pool is None:
            neighbours = _Neighbours()
            for i in self.todo:
                item, blob = self.files[i], self.blobs[i]
                scan, lines = _read(self.repo, self.spec, self.store, i, item, blob)
                neighbours.add(item.file.source, scan, lines)
                yield [(i, scan)], Totals.empty()
            return
        # Eight batches a worker: few enough that totals travel rarely, enough that the
        # workers finish together.
        size = max(1, len(self.todo) // (self.jobs * 8))
        # Each collector's files together, in order: a batch then ends in the middle of one
        # collector's files, not of every collector's, and a file's neighbour is nearly
        # always read in the same batch (`_Neighbours`).
        todo = sorted(self.todo, key=lambda i: self.files[i].file.source)
        work = [(i, self.files[i], self.blobs[i]) for i in todo]
        futures = [
            self.pool.submit(_scan_batch, work[start : start + size])
            for start in range(0, len(work), size)
        ]
        for future in as_completed(futures):
            yield future.result()

    def fetch(self, wanted: Mapping[int, set[int]]) -> Iterable[tuple[int, int, WireEvent]]:
        """The events on the wanted lines of each file: those read early from the lines
        kept, the others from the files again."""
        rest: dict[int, set[int]] = {}
        for index, lines in sorted(wanted.items()):
            early = self.early.get(index, {})
            yield from events_on(index, early, lines & early.keys())
            if lines - early.keys():
                rest[index] = lines - early.keys()
        yield from self._fetch_again(rest)

    def _fetch_again(self, wanted: Mapping[int, set[int]]) -> Iterable[tuple[int, int, WireEvent]]:
        if self.pool is None:
            for index, lines in sorted(wanted.items()):
                yield from fetch_lines(index, read_blob(self.repo, self.blobs[index]), lines)
            return
        futures = [
            self.pool.submit(_fetch, index, self.blobs[index], lines)
            for index, lines in sorted(wanted.items())
        ]
        for future in futures:
            yield from future.result()


def repeated_lines(
    scans: Sequence[FileScan],
) -> tuple[dict[int, set[int]], set[tuple[int, int]]]:
    """file index -> line numbers of events whose key digest occurs more than once, among
    the events counted and those set aside as too late; and which (file index, line) of them
    are the latter (claims: they decide their event without being counted)."""
    out: dict[int, set[int]] = defaultdict(set)
    claimed: set[tuple[int, int]] = set()
    if not scans:
        return out, claimed
    pools = [np.frombuffer(s.digests, dtype=np.int64) for s in scans]
    pools += [np.frombuffer(s.claims, dtype=np.int64) for s in scans]
    ordered = np.concatenate(pools)
    if len(ordered) < 2:
        return out, claimed
    ordered.sort()  # in place: a month's digests are a hundred megabytes and more
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if len(repeated) == 0:
        return out, claimed
    # Each file's digests looked up among the few repeated ones: memory of the size of one
    # file's digests, where one search over the month's took a gigabyte. A table of which
    # low bits the repeated digests have passes a few hundredths of them on to the binary
    # search, which alone cost more than the sort.
    bits = max(16, min(26, len(repeated).bit_length() + 6))
    sieve = _LowBits(repeated, bits)
    count = len(scans)
    for owner, pool in enumerate(pools):
        maybe = sieve.maybe(pool)
        candidates = pool[maybe]
        places = np.searchsorted(repeated, candidates)
        places[places == len(repeated)] = 0
        hits = maybe[repeated[places] == candidates].tolist()
        if owner < count:
            scan = scans[owner]
            for position in hits:
                out[scan.index].add(scan.line_numbers[position])
        else:
            scan = scans[owner - count]
            for position in hits:
                number = scan.claim_lines[position]
                out[scan.index].add(number)
                claimed.add((scan.index, number))
    return out, claimed
