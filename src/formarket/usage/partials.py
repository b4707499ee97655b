"""What a usage file holds, read once and kept: the cache of the one reading pipeline.

A usage file never changes once committed, and git names its content (the blob id), so what a
reading finds in a file (its totals, its events' key digests and lines, its set-aside lines)
depends only on that blob, its path and the rules of the reading. `PartialStore` keeps each
file's `FileScan` under those, and a reading of the same month again reads a few hundred small
files instead of millions of events; a reading with other rules (another period, listings
published since) keeps its own. Readers also keep what they computed from all the files at
once (the close's tally, `usage show`'s figures) under the whole list of blobs they read.

Every entry is sealed with this machine's cache key (an HMAC over its label and bytes) and
unpickled only when the seal verifies, so whoever can write the cache folder cannot make a
reader run their pickle or count other figures. An entry of other code is never read: the
fingerprint of a reading covers the source of this package and of the usage schema.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import time
from array import array
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import formarket.schemas.usage as usage_schema
from formarket.atomicfile import writing_atomically
from formarket.schemas.usage import SetAside
from formarket.usage.scan import FileScan, Rules, ScanFile, ScanSpec
from formarket.usage.totals import Totals

__all__ = ["PartialStore", "digest_seed", "spec_fingerprint", "store_for", "trim"]

# Raise when what an entry holds changes shape: entries of another format are never read.
FORMAT = 2
# What the usage entries of one cache folder may take: a month of 15 million events takes about
# 350 MB under one reading's rules.
KEEP_BYTES = 4 << 30
KEEP_DAYS = 45.0
_MAC = hashlib.sha256().digest_size


@cache
def _code_digest() -> str:
    """The source of what decides a reading's result: other code, other entries."""
    digest = hashlib.sha256(f"usage-partials-{FORMAT}".encode())
    here = Path(__file__).resolve().parent
    for path in [*sorted(here.glob("*.py")), Path(usage_schema.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _rules_text(rules: Rules | None) -> str:
    if rules is None:
        return "none"
    return repr(
        (
            rules.period,
            rules.first,
            sorted(rules.known),
            rules.skew.total_seconds(),
            sorted(rules.listings),
            rules.ceilings,
        )
    )


def spec_fingerprint(spec: ScanSpec) -> str:
    """Everything about a reading that its result depends on, as one digest."""
    digest = hashlib.sha256(_code_digest().encode())
    for part in (
        _rules_text(spec.new),
        _rules_text(spec.old),
        spec.seed,
        spec.by_day,
        spec.by_account,
    ):
        digest.update(repr(part).encode() + b"\0")
    return digest.hexdigest()


def digest_seed(key: bytes | None) -> int:
    """The seed of events' key digests, from this machine's cache key (0 without one)."""
    if key is None:
        return 0
    return int.from_bytes(hmac.digest(key, b"formarket usage key digests", "sha256")[:8], "little")


@dataclass(frozen=True)
class PartialStore:
    """Entries of one reading's rules (`fingerprint`), in `folder`, sealed with `key`."""

    folder: Path
    key: bytes
    fingerprint: str

    def _path(self, name: str, label: str) -> Path:
        digest = hashlib.sha256(f"{self.fingerprint}\0{label}\0{name}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest[2:40]}.{label}"

    def load(self, name: str, label: str) -> object | None:
        """The value kept under `name`, or None for none (or none that can be trusted)."""
        path = self._path(name, label)
        try:
            sealed = path.read_bytes()
            os.utime(path)  # used: the last to go when the cache is trimmed
        except OSError:
            return None
        mac, payload = sealed[:_MAC], sealed[_MAC:]
        expected = hmac.digest(self.key, label.encode() + b"\0" + payload, "sha256")
        if len(mac) != _MAC or not hmac.compare_digest(mac, expected):
            return None
        try:
            value: object = pickle.loads(payload)  # noqa: S301 - sealed with this machine's key
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
            return None
        return value

    def save(self, name: str, label: str, value: object) -> None:
        """Keep `value` under `name`; a cache that cannot be written only costs time."""
        payload = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        mac = hmac.digest(self.key, label.encode() + b"\0" + payload, "sha256")
        try:
            with writing_atomically(self._path(name, label), durable=False) as f:
                f.write(mac + payload)
        except OSError:
            return

    def get_scan(self, index: int, blob: str, item: ScanFile) -> FileScan | None:
        found = self.load(_scan_name(blob, item), "scan")
        if not isinstance(found, tuple) or len(found) != 8:
            return None
        lines, events, set_aside, digests, numbers, claims, claim_lines, totals = found
        if not isinstance(totals, Totals):
            return None
        scan = FileScan(index, lines, events, totals=totals)
        scan.set_aside = [
            SetAside(code=code, file=file, line=line, message=message)
            for code, file, line, message in set_aside
        ]
        scan.digests = array("q", digests)
        scan.line_numbers = array("I", numbers)
        scan.claims = array("q", claims)
        scan.claim_lines = array("I", claim_lines)
        return scan

    def put_scan(self, blob: str, item: ScanFile, scan: FileScan) -> None:
        value = (
            scan.lines,
            scan.events,
            [(s.code, s.file, s.line, s.message) for s in scan.set_aside],
            scan.digests.tobytes(),
            scan.line_numbers.tobytes(),
            scan.claims.tobytes(),
            scan.claim_lines.tobytes(),
            scan.totals,
        )
        self.save(_scan_name(blob, item), "scan", value)


def trim(folder: Path | None, budget: int = KEEP_BYTES, days: float = KEEP_DAYS) -> None:
    """Remove the usage entries of `folder` (a cache folder) unused for `days`, then the
    least recently used beyond `budget` bytes: readings under rules no longer read (a period
    closed long ago, listings since published) would otherwise pile up."""
    if folder is None:
        return
    entries: list[tuple[float, int, Path]] = []
    for path in (folder / "usage").glob("*/*"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    entries.sort(reverse=True)
    oldest = time.time() - days * 86400
    kept = 0
    for moment, size, path in entries:
        kept += size
        if moment < oldest or kept > budget:
            path.unlink(missing_ok=True)


def _scan_name(blob: str, item: ScanFile) -> str:
    # What a file holds depends on its path (its day and source) and on whether the previous
    # close read it, besides its bytes.
    return f"{blob}\0{item.file.path}\0{item.old}"


def store_for(folder: Path | None, key: bytes | None, spec: ScanSpec) -> PartialStore | None:
    """The store of a reading with `spec`'s rules; None without a cache folder or a key."""
    if folder is None or key is None:
        return None
    return PartialStore(folder / "usage", key, spec_fingerprint(spec))
