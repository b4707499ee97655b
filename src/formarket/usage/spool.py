"""The usage spool: events on local disk between the call that made them and the commit that
publishes them.

A writer (one gateway process, or the farm's meter) appends to segments of its own,
`<boot>-<n>.seg`, one line per event: the CRC-32 of the event's JSON in eight hex digits, a
space, the JSON, a newline. A torn last line (no newline) or a flipped bit (wrong checksum) is
therefore seen by the reader, reported and set aside, and never taken for an event.

A writer holds an exclusive `flock` on the segment it appends to; the kernel drops the lock
when the writer closes the segment or dies, however it dies. A segment nobody holds is sealed:
no one will ever append to it again (a writer never reopens a segment, a restarted one starts a
new boot), so the flusher may commit it whole. A segment is created under a hidden name and
renamed once locked, so the flusher never sees a new segment before its writer holds it.

Writes go to the kernel at once (`os.write`, one call per line), so a writer killed at any
point loses nothing it has written; `sync` (fsync) makes them survive a power loss too, and the
gateway calls it on a schedule or before it answers (see `formarket.gateway.meter`).

    SpoolError(FormarketError)    the spool cannot be written
"""

from __future__ import annotations

import fcntl
import os
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from formarket.errors import FormarketError
from formarket.usage.events import EventIds

__all__ = [
    "SEGMENT_SUFFIX",
    "LineProblem",
    "SegmentRead",
    "SpoolError",
    "SpoolWriter",
    "encode_line",
    "is_sealed",
    "parse_segment",
    "sealed_segments",
    "write_events",
]

SEGMENT_SUFFIX = ".seg"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


class SpoolError(FormarketError):
    """The spool cannot be written: a call that cannot be metered is not served."""


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line of a segment that is not an event, and why; `line` is 1-based."""

    line: int
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """The events of a segment (their JSON, with line numbers) and the lines set aside."""

    events: tuple[tuple[int, bytes], ...]
    problems: tuple[LineProblem, ...]


def encode_line(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def parse_segment(data: bytes) -> SegmentRead:
    """Split a segment into events and problems; never raises."""
    pieces = data.split(b"\n")
    tail = pieces.pop()  # b"" when the segment ends with a newline, as a whole one does
    events: list[tuple[int, bytes]] = []
    problems: list[LineProblem] = []
    for number, line in enumerate(pieces, 1):
        reason = _line_problem(line)
        if reason:
            problems.append(LineProblem(number, reason, line))
        else:
            events.append((number, line[9:]))
    if tail:
        problems.append(
            LineProblem(
                len(pieces) + 1,
                "torn: the last line has no newline (its writer stopped while writing it)",
                tail,
            )
        )
    return SegmentRead(tuple(events), tuple(problems))


def _line_problem(line: bytes) -> str:
    if len(line) < 10 or line[8:9] != b" " or not _is_checksum(line[:8]):
        return "not a spool line (no checksum)"
    # Compared as written (lowercase hex), so a flipped case bit is damage, not a match.
    if b"%08x" % zlib.crc32(line[9:]) != line[:8]:
        return "checksum mismatch: the line was changed or damaged after it was written"
    return ""


def _is_checksum(field: bytes) -> bool:
    return all(c in b"0123456789abcdefABCDEF" for c in field)


def is_sealed(path: Path) -> bool:
    """Whether no writer holds the segment (it closed it, or died)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return True


def sealed_segments(directory: Path) -> list[Path]:
    """The sealed segments of a spool, oldest boot first."""
    if not directory.is_dir():
        return []
    found = sorted(p for p in directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
    return [p for p in found if not p.name.startswith(".") and is_sealed(p)]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolWriter:
    """Appends events to segments of its own in `directory`.

    Not thread-safe: one thread appends; `sync` and sealing a detached segment may run in
    another thread, as long as only one of them runs at a time (the gateway's syncer does both,
    in turn).
    """

    def __init__(
        self,
        directory: Path,
        *,
        boot: str | None = None,
        segment_bytes: int = 16 << 20,
        segment_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.ids = EventIds(boot)
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self._clock = clock
        self._fd = -1
        self._number = 0
        self._opened_at = 0.0
        self._bytes = 0
        self._dir_dirty = False
        self.written = 0  # lines appended, ever: a sync covers those written before it began
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool {directory}: {exc.strerror}") from exc

    @property
    def boot(self) -> str:
        return self.ids.boot

    def _open(self) -> None:
        self._number += 1
        name = f"{self.ids.boot}-{self._number:06d}{SEGMENT_SUFFIX}"
        hidden = self.directory / f".{name}.new"
        try:
            fd = os.open(hidden, _OPEN_FLAGS, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(hidden, self.directory / name)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise SpoolError(f"cannot open a spool segment in {self.directory}: {exc}") from exc
        self._fd = fd
        self._opened_at = self._clock()
        self._bytes = 0
        self._dir_dirty = True

    def append(self, payload: bytes) -> int:
        """Write one event (its JSON, no newline); the number of lines written so far."""
        if self._fd < 0:
            self._open()
        line = encode_line(payload)
        try:
            written = os.write(self._fd, line)
            if written < len(line):  # rare for a regular file: a full disk, a signal
                view = memoryview(line)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SpoolError(f"cannot write to the spool: {exc.strerror or exc}") from exc
        self._bytes += len(line)
        self.written += 1
        return self.written

    def due(self) -> bool:
        """Whether the current segment should be sealed and a new one begun."""
        return self._fd >= 0 and (
            self._bytes >= self.segment_bytes
            or self._clock() - self._opened_at >= self.segment_seconds
        )

    def current(self) -> int:
        """The descriptor being appended to, or -1."""
        return self._fd

    def detach(self) -> int:
        """Stop appending to the current segment; the caller seals the returned descriptor
        (`seal`). The next append begins a new segment."""
        fd, self._fd = self._fd, -1
        return fd

    def sync(self, fd: int) -> None:
        """fsync one of this writer's segments (and the spool folder, once a segment was
        created since the last sync)."""
        try:
            if fd >= 0:
                os.fsync(fd)
            if self._dir_dirty:
                self._dir_dirty = False
                _fsync_dir(self.directory)
        except OSError as exc:
            raise SpoolError(f"cannot sync the spool: {exc.strerror or exc}") from exc

    def seal(self, fd: int) -> None:
        """Make a detached segment durable and let it go: closing drops the lock, which is
        what tells the flusher the segment is complete."""
        if fd < 0:
            return
        try:
            self.sync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.seal(self.detach())

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_events(directory: Path, events: Iterable[bytes]) -> int:
    """Append events (their JSON) to a new sealed segment of `directory`, durably; how many.

    For writers outside the gateway, such as the farm's meter of instance-hours.
    """
    count = 0
    with SpoolWriter(directory) as writer:
        for payload in events:
            writer.append(payload)
            count += 1
    return count
