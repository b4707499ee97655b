"""A cache of check results by content key, so unchanged documents are never checked twice.

It lives beside the repository's git data (`.git/formarket-cache/`), or in
`.formarket-cache/` of a plain folder, or where FORMARKET_CACHE_DIR says. Results are keyed by
the content key of what was checked and salted with everything else a result depends on: the
code of formarket itself, the contract and the farm's configuration. A cache that cannot be
read is ignored and rebuilt: it is never a source of truth.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ResultCache", "code_digest", "default_cache_dir"]

_FORMAT = b"formarket-cache-1"


@cache
def code_digest() -> str:
    """A digest of formarket's own source: results of older code are never reused."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(_FORMAT, digest_size=16)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for path in sorted((root / "data").glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def default_cache_dir(root: Path) -> Path:
    configured = os.environ.get("FORMARKET_CACHE_DIR")
    if configured:
        return Path(configured)
    git = root / ".git"
    if git.is_dir():
        return git / "formarket-cache"
    return root / ".formarket-cache"


class ResultCache:
    """One pickle file of {key: result}; loaded once, written back atomically if changed."""

    def __init__(self, path: Path | None, salt: str) -> None:
        self.path = path
        self.salt = salt
        self._data: dict[str, Any] = {}
        self._dirty = False
        self.hits = 0
        self.misses = 0
        if path is not None:
            self._data = self._load(path, salt)

    @staticmethod
    def _load(path: Path, salt: str) -> dict[str, Any]:
        try:
            with path.open("rb") as f:
                stored_salt, data = pickle.load(f)  # noqa: S301 - our own file, salted
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
            return {}
        return data if stored_salt == salt and isinstance(data, dict) else {}

    def get(self, key: str) -> Any:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._dirty = True

    def retain(self, keys: set[str]) -> None:
        """Forget results for keys not in `keys`, so the file does not grow without end."""
        stale = [k for k in self._data if k not in keys]
        for k in stale:
            del self._data[k]
        self._dirty = self._dirty or bool(stale)

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                pickle.dump((self.salt, self._data), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except OSError:
            return  # a cache that cannot be written only costs time next run
        self._dirty = False
