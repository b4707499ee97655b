"""Usage files: where usage lives in git, the bytes of a file, the limits a reader keeps.

A collector's flush of one day is `registry/usage/YYYY/MM/DD/<kind>/<name>-<seq>.jsonl.gz`:
gzip, one event's JSON a line. Files are append-only: once committed, a file never changes.

    usage_path / parse_usage_path     the path of a file, and what a path says
    pack_lines                        a file's bytes from its lines (every writer uses it)
    decompress                        a file's lines from its bytes, or why they cannot be had
    month_index / month_text          periods (YYYY-MM) as integers, and back
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from isal import isal_zlib

from formarket.inflate import INFLATE_ERROR, MOST_EXPANSION

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "USAGE_ROOT",
    "UsageFile",
    "decompress",
    "month_index",
    "month_text",
    "pack_lines",
    "parse_usage_path",
    "usage_path",
]

USAGE_ROOT = "registry/usage"
# A flush of one collector: far above a real one (a few MB), small enough to hold in memory.
MAX_FILE_BYTES = 256 << 20
MAX_LINE_BYTES = 16 << 10

_PATH = re.compile(
    r"^registry/usage/([0-9]{4})/([0-9]{2})/([0-9]{2})/"
    r"([a-z][a-z0-9-]{0,30})/([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)-([0-9]{1,12})\.jsonl\.gz$"
)


@dataclass(frozen=True, slots=True, order=True)
class UsageFile:
    """`registry/usage/YYYY/MM/DD/<source>-<seq>.jsonl.gz`: a collector's flush on a day."""

    path: str
    day: date
    source: str
    seq: int


def usage_path(day: date, source: str, seq: int) -> str:
    return f"{USAGE_ROOT}/{day.year:04d}/{day.month:02d}/{day.day:02d}/{source}-{seq:06d}.jsonl.gz"


def parse_usage_path(path: str) -> UsageFile | None:
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    year, month, day, kind, name, seq = match.groups()
    try:
        when = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return UsageFile(path, when, f"{kind}/{name}", int(seq))


def month_index(period: str) -> int:
    """`YYYY-MM` as a count of months, so periods compare and subtract as integers."""
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def pack_lines(lines: Iterable[bytes]) -> bytes:
    """A usage file's bytes: each line (an event's JSON) ends in a newline, and the whole is
    gzip at level 6 with no timestamp, so that the same events make the same bytes whoever
    writes them."""
    return gzip.compress(b"\n".join(lines) + b"\n", 6, mtime=0)


def decompress(data: bytes) -> bytes | str:
    """The file's bytes, or why they cannot be had. Several gzip members are one stream.

    ISA-L inflates the same deflate streams as zlib, about three times as fast: reading
    usage is mostly inflating and decoding, and a month is read twice (scan, then settle)."""
    out: list[bytes] = []
    size = 0
    rest = data
    try:
        while rest:
            engine = isal_zlib.decompressobj(wbits=31)
            pending = rest
            # First as much as the last member's trailer says (a file the collectors write
            # is one member): its output is then allocated once, where growing it as it
            # filled cost as long as the inflating. Any other size only costs time.
            budget = min(_trailer_size(rest) + 1, MAX_FILE_BYTES + 1 - size)
            while True:
                chunk = engine.decompress(pending, budget)
                size += len(chunk)
                out.append(chunk)
                if size > MAX_FILE_BYTES:
                    return f"holds more than {MAX_FILE_BYTES >> 20} MiB of usage"
                if engine.eof or (not engine.unconsumed_tail and len(chunk) < budget):
                    break
                pending = engine.unconsumed_tail
                budget = MAX_FILE_BYTES + 1 - size
            if not engine.eof:
                return "the gzip stream is truncated"
            rest = engine.unused_data
    except INFLATE_ERROR as exc:
        return f"not a gzip file ({exc})"
    return b"".join(out)


def _trailer_size(data: bytes) -> int:
    """The size a gzip member's trailer gives (modulo 4 GiB), within what `data` can hold."""
    if len(data) < 18:
        return 0
    return min(int.from_bytes(data[-4:], "little"), len(data) * MOST_EXPANSION)
