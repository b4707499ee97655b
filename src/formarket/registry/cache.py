"""A cache of check results by content key, so unchanged documents are never checked twice.

It lives beside the repository's git data (`.git/formarket-cache/`), or in
`.formarket-cache/` of a plain folder, or where FORMARKET_CACHE_DIR says. Results are keyed by
the content key of what was checked and salted with everything else a result depends on: the
code of formarket itself, the contract and the farm's configuration. A cache that cannot be
read is ignored and rebuilt: it is never a source of truth.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import zlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from formarket.atomicfile import writing_atomically
from formarket.registry.cachekey import cache_key, seal, unseal
from formarket.settings import CACHE_DIR

__all__ = ["ResultCache", "code_digest", "default_cache_dir"]

_FORMAT = b"formarket-cache-3"


# The code a check result depends on: the rules and their table (which gives each finding its
# severity), the models, the Formfile parser, their data.
_RESULT_CODE = (
    "registry/*.py",
    "rules.py",
    "schemas/*.py",
    "formfile/*.py",
    "yamldoc.py",
    "data/*",
)


@cache
def code_digest() -> str:
    """A digest of the code behind check results: results of other code are never reused."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(_FORMAT, digest_size=16)
    for pattern in _RESULT_CODE:
        for path in sorted(root.glob(pattern)):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def default_cache_dir(root: Path, environ: Mapping[str, str] | None = None) -> Path:
    configured = CACHE_DIR.read(environ)
    if configured is not None:
        return configured
    git = root / ".git"
    if git.is_dir():
        return git / "formarket-cache"
    return root / ".formarket-cache"


class ResultCache:
    """Check results by key, in two files read only when needed.

    `<name>.<shard>` hold one entry per document checked, in `SHARDS` files by a hash of the
    key; `<name>.runs` holds the findings of whole runs, so that a run with nothing changed
    reads a small file and never the large ones. Values are plain data (tuples, dicts,
    strings, numbers) written with `marshal`, which reads a cache of ten thousand listings
    several times faster than pickle. Files are written back atomically, only when changed:
    a pull request that changes one listing rewrites, and signs again, one shard, not
    everything (signing twelve megabytes cost a tenth of a one-listing check).
    """

    # Whole-run results kept: enough for a few branches checked in turn.
    RUNS_KEPT = 8
    SHARDS = 16

    def __init__(
        self, path: Path | None, salt: str, *, for_command: bool = False, key: bytes | None = None
    ) -> None:
        """`for_command`: the cache lives as long as the process, a command that ends when its
        check does; what is read then stays out of the cycle collector's walks for good.
        `key` signs the files (default: this machine's cache key); with no key to be had, the
        cache keeps nothing."""
        if path is not None and key is None:
            key = cache_key()
        if key is None:
            path = None
        self.path = path
        self.salt = salt
        self.for_command = for_command
        self._key = key or b""
        self._entries: dict[str, Any] | None = None if path is not None else {}
        self._runs: dict[str, Any] | None = None if path is not None else {}
        self._dirty: set[str] = set()
        self._dirty_shards: set[int] = set()

    def _shard_path(self, shard: int) -> Path:
        assert self.path is not None
        return self.path.with_name(f"{self.path.name}.{shard:x}")

    def _shard(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.SHARDS

    def _load_entries(self) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        for shard in range(self.SHARDS):
            entries.update(self._load(self._shard_path(shard)))
        return entries

    def _load(self, path: Path) -> dict[str, Any]:
        # Tens of thousands of tuples, none in a cycle: the cycle collector, run again and
        # again while they were made and afterwards, walked them all each time (a fifth of a
        # pull-request check). It is paused while they are read, and in a command it no longer
        # walks what exists at that point.
        try:
            sealed = path.read_bytes()
        except OSError:
            return {}
        # Only a file this machine signed is parsed at all: marshal is not meant for bytes
        # from anyone else.
        raw = unseal(self._key, _FORMAT, sealed)
        if raw is None:
            return {}
        enabled = gc.isenabled()
        gc.disable()
        try:
            stored_salt, data = marshal.loads(raw)  # noqa: S302 - our own file, signed
        except (EOFError, ValueError, TypeError):
            return {}
        finally:
            if enabled:
                gc.enable()
        if self.for_command:
            gc.freeze()
        return data if stored_salt == self.salt and isinstance(data, dict) else {}

    def _table(self, key: str) -> dict[str, Any]:
        if key.startswith("run:"):
            if self._runs is None:
                assert self.path is not None
                self._runs = self._load(self.path.with_suffix(".runs"))
            return self._runs
        if self._entries is None:
            self._entries = self._load_entries()
        return self._entries

    def empty(self) -> bool:
        """True when no document has a result here (a first run, or a cache turned off).
        Whole runs are asked first: their file is small, and a run that is answered whole
        never needs the large one."""
        if self._table("run:"):
            return False
        return not self._table("")

    def get(self, key: str) -> Any:
        return self._table(key).get(key)

    def put(self, key: str, value: Any) -> None:
        table = self._table(key)
        if key.startswith("run:"):
            table.pop(key, None)  # re-inserted last: the dict's order is the age order
            while len(table) >= self.RUNS_KEPT:
                del table[next(iter(table))]
            self._dirty.add("runs")
        else:
            self._dirty_shards.add(self._shard(key))
        table[key] = value

    def retain(self, keys: set[str]) -> None:
        """Forget document entries not in `keys` (and remembered folder listings beyond a
        bound), so the file does not grow without end."""
        table = self._table("")
        trees = [k for k in table if k.startswith("tree:")]
        stale = [k for k in table if k not in keys and not k.startswith("tree:")]
        stale += trees[: max(0, len(trees) - 4 * len(keys) - 64)]
        for k in stale:
            del table[k]
            self._dirty_shards.add(self._shard(k))

    def read_signed(self, name: str, label: bytes) -> bytes | None:
        """The payload of the side file `<name>` beside the cache, if this machine signed it."""
        if self.path is None:
            return None
        try:
            sealed = self.path.with_name(f"{name}.index").read_bytes()
        except OSError:
            return None
        return unseal(self._key, label, sealed)

    def write_signed(self, name: str, label: bytes, payload: bytes) -> None:
        """Keep `payload` in the side file `<name>`, signed; nothing when the cache is off."""
        if self.path is None:
            return
        try:
            with writing_atomically(self.path.with_name(f"{name}.index"), durable=False) as f:
                f.write(seal(self._key, label, payload))
        except OSError:
            return  # a cache that cannot be written only costs time next run

    def save(self) -> None:
        if self.path is None:
            return
        writes: list[tuple[Path, Any]] = []
        if "runs" in self._dirty:
            writes.append((self.path.with_suffix(".runs"), self._runs))
        if self._dirty_shards:
            shards: dict[int, dict[str, Any]] = {s: {} for s in self._dirty_shards}
            for key, value in (self._entries or {}).items():
                shard = shards.get(self._shard(key))
                if shard is not None:
                    shard[key] = value
            writes.extend((self._shard_path(s), shards[s]) for s in sorted(shards))
        for target, data in writes:
            try:
                payload = marshal.dumps((self.salt, data))
                with writing_atomically(target, durable=False) as f:
                    f.write(seal(self._key, _FORMAT, payload))
            except OSError:
                continue  # a cache that cannot be written only costs time next run
        self._dirty.clear()
        self._dirty_shards.clear()
