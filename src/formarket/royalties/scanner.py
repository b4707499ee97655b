"""Reading many usage files on every core.

Worker processes open the repository themselves and read each file's blob by id, so only ids
go out and compact scans come back. The same workers then read again the few lines that
`tally` needs a second look at. An in-memory repository, or a handful of files, is read in
this process: a pool costs more than it saves there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from types import TracebackType

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo, Repo

from formarket.market.repository import open_repository
from formarket.market.trees import read_blob
from formarket.royalties.tally import add_totals
from formarket.usage.reader import (
    FileScan,
    ScanFile,
    ScanSpec,
    Sums,
    TotalsKey,
    fetch_lines,
    scan_file,
)
from formarket.usage.wire import WireEvent

__all__ = ["Progress", "Scanner"]

# (files done, files in all, events so far)
Progress = Callable[[int, int, int], None]

# Below this much compressed usage, reading here is quicker than starting workers.
_PARALLEL_FROM = 16 << 20
_PROBE = "formarket/royalties\0probe"

_worker: tuple[Repo, ScanSpec] | None = None


def _init(path: str, spec: ScanSpec) -> None:
    global _worker
    _worker = (open_repository(path, search_up=False), spec)


def _scan_batch(
    batch: list[tuple[int, ScanFile, ObjectID]],
) -> tuple[list[tuple[int, FileScan]], dict[TotalsKey, Sums], int]:
    """Scan a batch of files; their totals come back summed once, not file by file (each
    file's totals hold an entry per pair of listing versions: sending and adding them one
    file at a time cost more than reading the usage)."""
    assert _worker is not None
    repo, spec = _worker
    scans = []
    totals: dict[TotalsKey, Sums] = {}
    for index, item, blob in batch:
        scan = scan_file(index, item.file, read_blob(repo, blob), item.old, spec)
        add_totals(totals, scan.totals)
        scan.totals = {}
        scans.append((index, scan))
    return scans, totals, hash(_PROBE)


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
    """Scans `files` (files[i] is stored in blobs[i]) of `repo` with `spec`; a context
    manager, so that its workers stop when it is done."""

    def __init__(
        self,
        repo: BaseRepo,
        files: Sequence[ScanFile],
        blobs: Sequence[ObjectID],
        spec: ScanSpec,
        *,
        jobs: int | None = None,
    ) -> None:
        self.repo = repo
        self.files = files
        self.blobs = blobs
        self.spec = spec
        self.pool: Executor | None = None
        # Asked for several jobs, use them; by default, only when there is enough to read.
        wanted = jobs is not None or _stored_size(repo, blobs) >= _PARALLEL_FROM
        jobs = jobs or len(os.sched_getaffinity(0)) or 1
        self.jobs = jobs
        if wanted and jobs > 1 and len(files) > 1 and isinstance(repo, Repo):
            self.pool = ProcessPoolExecutor(
                max_workers=min(jobs, len(files)),
                mp_context=get_context("fork"),
                initializer=_init,
                initargs=(repo.path, spec),
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
        totals: dict[TotalsKey, Sums] = {}
        done = events = 0
        for scans, batch_totals in self._batches():
            add_totals(totals, batch_totals)
            for index, scan in scans:
                add_totals(totals, scan.totals)
                scan.totals = {}
                results[index] = scan
                events += scan.events
                done += 1
            if progress:
                progress(done, total, events)
        out = [r for r in results if r is not None]
        assert len(out) == total
        if out:
            out[0].totals = totals
        return out

    def _batches(
        self,
    ) -> Iterable[tuple[list[tuple[int, FileScan]], dict[TotalsKey, Sums]]]:
        if self.pool is None:
            for i, (item, blob) in enumerate(zip(self.files, self.blobs, strict=True)):
                scan = scan_file(i, item.file, read_blob(self.repo, blob), item.old, self.spec)
                yield [(i, scan)], {}
            return
        jobs = self.jobs
        # Eight batches a worker: few enough that totals travel rarely, enough that the
        # workers finish together.
        size = max(1, len(self.files) // (jobs * 8))
        work = [(i, self.files[i], self.blobs[i]) for i in range(len(self.files))]
        futures = [
            self.pool.submit(_scan_batch, work[start : start + size])
            for start in range(0, len(work), size)
        ]
        for future in as_completed(futures):
            scans, totals, probe = future.result()
            if probe != hash(_PROBE):
                # Key hashes are compared across processes: they must share one hash
                # secret, which forked workers inherit.
                raise RuntimeError("a usage worker hashes strings differently")
            yield scans, totals

    def fetch(self, wanted: Mapping[int, set[int]]) -> Iterable[tuple[int, int, WireEvent]]:
        """The events on the wanted lines of each file, for `tally`."""
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
