"""Pseudonyms: the only name an account has in git.

The marketplace repository is public, and what the bot commits says whose it is: each
deployment its requester and paying account, each usage event its paying account, each
deployment commit whom it was made for. So all of them name an account by its pseudonym:
`acct_` and 26 base32 letters, the first 130 bits of HMAC-SHA256 of the login under the
operator's pseudonym key. Anyone may count what one pseudonym used; only the operator, who
holds the key, can tell whose it is, and an account learns its own from the control plane.

GitHub logins ignore case, so a login is lower-cased before it is hashed: `Ada` and `ada`
are one account with one pseudonym. No GitHub login holds `_`, so no login can pass for a
pseudonym; the sign-in and the issue flow refuse one that tries (`is_pseudonym`), and a name
that already is a pseudonym stands for itself (the farm bills an agent's model calls to its
deployment's account, which it knows only by pseudonym).

Documents committed before pseudonyms name accounts by login; `names` gives both, so that an
account still finds everything it had.

The key is the file FORMARKET_PSEUDONYM_KEY names, by default `pseudonym.key` in the
gateway's state folder, which the gateways, the farm and the control plane of one machine
share. It is made on first use, and unlike the cache key (formarket.registry.cachekey) it is
never silently done without: a part that made its own key would write other pseudonyms than
the rest. It may belong to another user (the gateway and the farm may run as two), but no one
else may read it (anyone holding it can hash a list of logins and match them to the usage) or
change it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from formarket.atomicfile import create_once
from formarket.errors import UsageError
from formarket.settings import PSEUDONYM_KEY

__all__ = [
    "PSEUDONYM_PATTERN",
    "Pseudonyms",
    "is_pseudonym",
    "key_path",
    "load_pseudonyms",
]

PSEUDONYM_PATTERN = r"^acct_[a-z2-7]{26}$"
_PSEUDONYM = re.compile(PSEUDONYM_PATTERN)
_PREFIX = "acct_"
_LENGTH = 26  # base32 letters: 130 bits, so that no two accounts meet by chance
_KEY_BYTES = 32
_MIN_KEY_BYTES = 16
_LABEL = b"formarket.account-pseudonym/1\0"
_FILE = "pseudonym.key"
_KNOWN_MAX = 4096


def is_pseudonym(name: str) -> bool:
    """Whether `name` has a pseudonym's shape (never a GitHub login's)."""
    return _PSEUDONYM.fullmatch(name) is not None


class Pseudonyms:
    """The pseudonyms of one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError("a pseudonym key has at least 16 bytes")
        self._key = key
        # The gateway asks at each call, for the few accounts whose keys it sees.
        self._known: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return "Pseudonyms(<key>)"  # never the key

    def of(self, login: str) -> str:
        """`login`'s pseudonym; a pseudonym is its own."""
        if is_pseudonym(login):
            return login
        mac = hmac.digest(self._key, _LABEL + login.lower().encode(), hashlib.sha256)
        return _PREFIX + base64.b32encode(mac).decode("ascii")[:_LENGTH].lower()

    def secret(self, purpose: str, text: str) -> str:
        """A secret of the key's holder for `text` (32 hex digits), one per `purpose`: what
        the key hashes for a pseudonym is never what it hashes for anything else."""
        label = f"formarket.{purpose}/1".encode() + b"\0"
        return hmac.digest(self._key, label + text.encode(), hashlib.sha256).hex()[:32]

    def names(self, login: str) -> frozenset[str]:
        """Every name `login`'s account has in git: its pseudonym, and the login itself as
        documents committed before pseudonyms wrote it."""
        found = self._known.get(login)
        if found is None:
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()
            found = self._known[login] = frozenset((self.of(login), login))
        return found

    def owns(self, named: str, login: str) -> bool:
        """Whether a document that names the account `named` is `login`'s."""
        return named in self.names(login)


def key_path(gateway_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """FORMARKET_PSEUDONYM_KEY, else `pseudonym.key` in the gateway's state folder."""
    return PSEUDONYM_KEY.read(environ) or gateway_dir / _FILE


def load_pseudonyms(gateway_dir: Path, environ: Mapping[str, str] | None = None) -> Pseudonyms:
    """The operator's pseudonyms, their key made on first use; UsageError when the key cannot
    be read or made, or others may read or change it."""
    path = key_path(gateway_dir, environ)
    try:
        return Pseudonyms(_read_key(path))
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    try:
        made = _make_key(path)
    except OSError as exc:
        raise UsageError(
            f"cannot make the pseudonym key {path}: {exc.strerror or exc}",
            hint=f"make its folder writable, or set {PSEUDONYM_KEY.variable} to a key file"
            " the gateways, the farm and the control plane share",
        ) from exc
    try:
        # None: another process made one meanwhile, and everyone uses that one.
        return Pseudonyms(made if made is not None else _read_key(path))
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: OSError) -> UsageError:
    return UsageError(
        f"cannot read the pseudonym key {path}: {exc.strerror or exc}",
        hint="give this user read access to it (and no one else), or set"
        f" {PSEUDONYM_KEY.variable} to the key file",
    )


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o026:
            raise UsageError(
                f"the pseudonym key {path} is not a file that only its owner may change and"
                " others may not read",
                hint=f"chmod 600 {path} (640 to share it with the group of the other parts)",
            )
        key = os.read(fd, 4096)
    finally:
        os.close(fd)
    if len(key) < _MIN_KEY_BYTES:
        raise UsageError(
            f"the pseudonym key {path} is too short ({len(key)} bytes; at least {_MIN_KEY_BYTES})",
            hint="restore it from its backup; a new key would give every account another"
            " pseudonym, and their past usage would no longer be found",
        )
    return key


def _make_key(path: Path) -> bytes | None:
    """A new key in `path`; None when another process made its own first."""
    key = secrets.token_bytes(_KEY_BYTES)
    return key if create_once(path, key) else None
