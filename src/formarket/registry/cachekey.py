"""The key that signs this machine's caches, kept outside every repository.

A cache sits beside the repository (`.git/formarket-cache/`), where whoever can write the
repository's folder, or restore a CI cache into it, can write it too. A salt computed from the
public code proved nothing: anyone can compute it. So each cache file carries an HMAC made with
a key of this machine's own, and a file whose MAC does not verify is read as empty. The key is a
file named by FORMARKET_CACHE_KEY, by default one made on first use in the user's state folder,
readable by its owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from formarket.atomicfile import create_once
from formarket.errors import UsageError
from formarket.settings import CACHE_KEY

__all__ = ["cache_key", "default_key_path", "seal", "unseal"]

_KEY_BYTES = 32
_MAC_BYTES = hashlib.sha256().digest_size


def default_key_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "formarket" / "cache.key"


def cache_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """This machine's cache key, made on first use; None when there is none and none can be
    made (a read-only home): then nothing cached is trusted, and nothing is kept."""
    path = CACHE_KEY.read(environ) or default_key_path(environ)
    try:
        return _read_key(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError:
        return None
    try:
        made = _make_key(path)
    except OSError:
        return None
    # None: another run made one meanwhile.
    return made if made is not None else _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        # A key that others may write lets them sign what they like.
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022 or st.st_uid != os.getuid():
            raise UsageError(
                f"the cache key {path} is not a file of your own that only you may change",
                hint=f"chmod 600 {path}, or delete it and a new one is made",
            )
        key = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(key) < 16:
        raise UsageError(
            f"the cache key {path} is too short to sign with",
            hint="delete it: a new one is made on the next run",
        )
    return key


def _make_key(path: Path) -> bytes | None:
    """A new key in `path`; None when another run made its own first."""
    key = secrets.token_bytes(_KEY_BYTES)
    return key if create_once(path, key) else None


def seal(key: bytes, label: bytes, payload: bytes) -> bytes:
    """`payload` with its MAC in front. `label` names what the bytes are, so that a signed
    file of one kind is never taken for another."""
    return hmac.digest(key, label + b"\0" + payload, "sha256") + payload


def unseal(key: bytes, label: bytes, sealed: bytes) -> bytes | None:
    """The payload of sealed bytes, or None when their MAC does not verify."""
    mac, payload = sealed[:_MAC_BYTES], sealed[_MAC_BYTES:]
    if len(mac) != _MAC_BYTES:
        return None
    expected = hmac.digest(key, label + b"\0" + payload, "sha256")
    return payload if hmac.compare_digest(mac, expected) else None
