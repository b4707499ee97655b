"""The gateway's key check over both kinds of key: the operator's (the keys file) and the
accounts' (the accounts database).

The gateway believes a header it has verified once, as long as the object `AccountKeys.get`
returns stays the same (formarket.gateway.app keeps its verified headers per object). So that
object is replaced whenever something it vouched for may have stopped holding: the keys file
changed, the accounts database's revocation generation moved (accounts.watch: microseconds
per call), or the earliest expiry among the account keys it vouched for has come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from formarket.accounts.keyformat import parse_key
from formarket.accounts.store import AccountStore
from formarket.accounts.watch import RevocationWatch
from formarket.gateway.keys import KeyRecord, KeyStore

__all__ = ["AccountKeys", "Authenticator"]

# Refused keys remembered per generation, so that a flood of made-up keys costs one query each
# at most, not one per call.
_REFUSED_MAX = 10_000


class Authenticator(Protocol):
    def authenticate(self, presented: str) -> KeyRecord | None: ...


class _Both:
    """One generation of the key check: the operator's keys as read, the accounts' as asked."""

    def __init__(self, operator: KeyStore, accounts: AccountStore, rate: float) -> None:
        self.operator = operator
        self.accounts = accounts
        self.rate = rate
        self.next_expiry = float("inf")
        self._refused: set[str] = set()

    def authenticate(self, presented: str) -> KeyRecord | None:
        parsed = parse_key(presented)
        if parsed is None:
            return None
        if parsed[0] in self.operator.by_id:
            return self.operator.authenticate(presented)
        if presented in self._refused:
            return None
        grant = self.accounts.authenticate(presented)
        if grant is None:
            if len(self._refused) >= _REFUSED_MAX:
                self._refused.clear()
            self._refused.add(presented)
            return None
        if grant.expires_at is not None:
            self.next_expiry = min(self.next_expiry, grant.expires_at.timestamp())
        return KeyRecord(
            id=grant.id,
            account=grant.account,
            sha256="",
            created="",
            scope=None if grant.deployment is None else (grant.deployment,),
            rate_per_second=self.rate,
            burst=max(1, int(self.rate * 2)),
            account_id=grant.account_id,
        )


class AccountKeys:
    """`get()` is the current key check, for `Gateway(keys=...)`."""

    def __init__(
        self,
        operator: Callable[[], KeyStore],
        accounts: AccountStore,
        revocations: RevocationWatch,
        *,
        rate: float = 20.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._operator = operator
        self._accounts = accounts
        self._revocations = revocations
        self._wall = wall
        self._rate = rate
        self._current = _Both(operator(), accounts, rate)

    def get(self) -> Authenticator:
        current = self._current
        operator = self._operator()
        if (
            self._revocations.changed()
            or operator is not current.operator
            or self._wall() >= current.next_expiry
        ):
            current = self._current = _Both(operator, self._accounts, self._rate)
        return current

    def close(self) -> None:
        self._revocations.close()
