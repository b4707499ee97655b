"""API keys: one or more per account, stored hashed, each with its own limits.

A key reads `fmk_<id>_<secret>`, as accounts' keys do (formarket.accounts.keyformat says why
only the SHA-256 of the secret is stored). These are the operator's keys; the gateway takes
accounts' keys too (formarket.gateway.account_keys).

The keys file (`keys.json` in the gateway's state folder) is written by `formarket gateway
keys` (under a lock, replaced atomically) and read by the gateway, which picks up changes
while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec

from formarket.accounts.keyformat import KEY_PATTERN, hash_secret, parse_key, secret_matches
from formarket.atomicfile import write_atomically
from formarket.errors import InputError, NotFoundError, UsageError
from formarket.schemas.usage import ACCOUNT_PATTERN

__all__ = [
    "KEY_PATTERN",
    "KeyRecord",
    "KeyStore",
    "create_key",
    "load_keys",
    "parse_key",
    "revoke_key",
    "verify",
]

_ACCOUNT_RE = re.compile(ACCOUNT_PATTERN)
_FORMAT = "formarket.gateway-keys/1"


class KeyRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A key as stored: never the secret, only its hash."""

    id: str
    account: str
    sha256: str
    created: str
    rate_per_second: float = 20.0
    burst: int = 40
    requests_per_day: int | None = None
    tokens_per_day: int | None = None
    revoked: bool = False
    # A daily spending cap in the platform's currency (a decimal string in the file).
    usd_per_day: Decimal | None = None
    # The deployments the key may call (None: all of its account's); a key the farm makes
    # for an agent deployment names that deployment and its model's.
    scope: tuple[str, ...] | None = None
    # The account in the accounts database whose prepaid credit the key's calls draw on
    # (None: an operator's key, which has no balance).
    account_id: int | None = None


class _KeysFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    keys: tuple[KeyRecord, ...]


@dataclass(frozen=True, slots=True)
class KeyStore:
    """The keys by id, as read from the keys file."""

    by_id: dict[str, KeyRecord]

    def authenticate(self, presented: str) -> KeyRecord | None:
        """The record of a presented key when it is valid, unrevoked and its secret matches."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        record = self.by_id.get(parsed[0])
        if record is None or record.revoked or not verify(record, parsed[1]):
            return None
        return record


def verify(record: KeyRecord, secret: str) -> bool:
    return secret_matches(record.sha256, secret)


def load_keys(path: Path) -> KeyStore:
    """The keys file; a missing file is no keys."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return KeyStore({})
    try:
        doc = msgspec.json.decode(raw, type=_KeysFile)
    except msgspec.DecodeError as exc:
        raise InputError(
            f"{path} is not a keys file: {exc}",
            hint="it is written by `formarket gateway keys`; restore it from a backup",
        ) from exc
    return KeyStore({record.id: record for record in doc.keys})


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _save(path: Path, store: KeyStore) -> None:
    records = tuple(sorted(store.by_id.values(), key=lambda r: (r.account, r.created, r.id)))
    data = msgspec.json.format(msgspec.json.encode(_KeysFile(_FORMAT, records)), indent=2)
    # The temporary file is made 0600 (mkstemp), and the rename keeps that mode.
    write_atomically(path, data + b"\n")


def create_key(
    path: Path,
    account: str,
    *,
    rate_per_second: float = 20.0,
    burst: int | None = None,
    requests_per_day: int | None = None,
    tokens_per_day: int | None = None,
    usd_per_day: Decimal | None = None,
    scope: tuple[str, ...] | None = None,
) -> tuple[str, KeyRecord]:
    """A new key for `account`: the key itself (shown once, never stored) and its record."""
    if not _ACCOUNT_RE.match(account):
        raise UsageError(
            f"{account!r} is not an account name",
            hint="letters, digits and . _ @ : - , starting with a letter or digit",
        )
    if rate_per_second <= 0:
        raise UsageError("the rate must be above 0 requests per second")
    if usd_per_day is not None and (not usd_per_day.is_finite() or usd_per_day <= 0):
        raise UsageError("the spending cap must be an amount above 0, such as 5.00")
    with _locked(path):
        store = load_keys(path)
        key_id = secrets.token_hex(6)
        while key_id in store.by_id:
            key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = KeyRecord(
            id=key_id,
            account=account,
            sha256=hash_secret(secret),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            rate_per_second=rate_per_second,
            burst=burst if burst is not None else max(1, int(rate_per_second * 2)),
            requests_per_day=requests_per_day,
            tokens_per_day=tokens_per_day,
            usd_per_day=usd_per_day,
            scope=scope,
        )
        _save(path, KeyStore({**store.by_id, key_id: record}))
    return f"fmk_{key_id}_{secret}", record


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    with _locked(path):
        store = load_keys(path)
        record = store.by_id.get(key_id)
        if record is None:
            raise NotFoundError(f"no key {key_id}", hint="`formarket gateway keys list` shows them")
        revoked = msgspec.structs.replace(record, revoked=True)
        _save(path, KeyStore({**store.by_id, key_id: revoked}))
    return revoked
