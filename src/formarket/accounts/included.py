"""Subscriptions' included usage, leased to gateway processes as credit is.

A subscriber's call to the listing it subscribes to draws on its tier's included requests and
tokens for the current period. Several gateway processes serve one account, and a call must
not wait for a transaction, so a process leases a slice of the period's included usage in one
transaction (`take_included`) and draws calls on it in memory (formarket.gateway.included),
as it does with credit (formarket.accounts.credit). The period's included amount is what its
returned leases used (`Subscription.used_*`) plus what its open leases hold plus what is
left, and leasing never hands out more than is left. So calls, however many processes serve
them, never use more than the tier includes.

The one exception, as with credit, is a process killed outright: its lease expires after its
ttl and gives back what it held less what it had written as used, so the calls it served since
it last wrote (every second or so, at most its slice) may be used again by others. That slice
is bounded: a take gets what it is short plus at most half of what is left.

A lease belongs to one period: when the period ends, its leases count no more. A take renews
a subscription that is due first (charging its next period, as the farm's renewals do, once
however many ask), then looks for the one that covers now.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session as OrmSession

from formarket.accounts.credit import _changed, _utc
from formarket.accounts.models import IncludedLease, Subscription
from formarket.accounts.subscriptions import SubscriptionStore

__all__ = ["IncludedStore", "Measure", "Slice", "Terms"]

# A subscription whose period is paid for: it covers calls until its period ends, cancelled
# or not.
_COVERING = ("active", "cancelled")


@dataclass(frozen=True, slots=True)
class Measure:
    """An amount of included usage: requests and tokens."""

    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Terms:
    """The subscription that covers an account's calls to a listing now: its period, what
    the period includes (None: no limit in that measure) and the price of a call beyond it
    (None: none is sold, such a call is refused)."""

    subscription: str
    period: int
    period_end: datetime
    requests: int | None
    tokens: int | None
    overage: Decimal | None

    @property
    def limited(self) -> bool:
        """Whether the tier limits its included usage at all (else no lease is needed)."""
        return self.requests is not None or self.tokens is not None


@dataclass(frozen=True, slots=True)
class Slice:
    """A lease of included usage as its holder knows it after a transaction: its id, the
    period it is of, and all it holds."""

    id: str
    subscription: str
    period: int
    requests: int
    tokens: int


def _terms(row: Subscription) -> Terms:
    return Terms(
        row.id,
        row.periods,
        _utc(row.period_end),
        row.included_requests,
        row.included_tokens,
        row.overage_per_request,
    )


def _extra(left: int, short: int, more: int) -> int:
    """What a take adds in one measure: at least `short`, up to `more`, but no more than half
    of what is left beyond `short`, so that other processes find some too (-1: short)."""
    if left < short:
        return -1
    return min(left, max(short, min(more, left // 2)))


class IncludedStore(SubscriptionStore):
    """Included usage of subscriptions, leased to gateway processes."""

    def take_included(
        self,
        account_id: int,
        listing: str,
        holder: str,
        lease: Slice | None,
        used: Measure,
        *,
        short: Measure,
        more: Measure,
        ttl: timedelta,
    ) -> tuple[Terms | None, Slice | None]:
        """The terms of the subscription that covers the account's calls to `listing` now
        (None: none does), and the holder's lease of its period's included usage after adding
        at least `short` and up to `more` (in the measures the tier limits), recording `used`
        as what `lease` has used. The lease returned may be another than `lease` (that one was
        of an ended period, or lost); it is None when the tier limits nothing, or when there
        was none and `short` could not be had. When `short` cannot be had, nothing is added."""
        now = self._clock()
        with self._sessions.begin() as db:
            # The balance row first, as every transaction on an account's money: renewing a
            # subscription charges it.
            if not self._touch(db, account_id):
                return None, None
            terms = self._covering(db, account_id, listing, now)
            if terms is None:
                if lease is not None:
                    db.execute(delete(IncludedLease).where(IncludedLease.id == lease.id))
                return None, None
            sub = db.get(Subscription, terms.subscription, populate_existing=True)
            assert sub is not None  # found just now, under the lock
            row = self._sweep_included(db, sub, now + ttl, lease, used)
            if not terms.limited:
                return terms, None
            leased = Measure()
            for requests, tokens in db.execute(
                select(IncludedLease.requests, IncludedLease.tokens).where(
                    IncludedLease.subscription_id == sub.id, IncludedLease.period == sub.periods
                )
            ):
                leased = Measure(leased.requests + requests, leased.tokens + tokens)
            add_requests = add_tokens = 0
            if terms.requests is not None:
                left = terms.requests - sub.used_requests - leased.requests
                add_requests = _extra(left, max(short.requests, 0), max(more.requests, 0))
            if terms.tokens is not None:
                left = terms.tokens - sub.used_tokens - leased.tokens
                add_tokens = _extra(left, max(short.tokens, 0), max(more.tokens, 0))
            if add_requests < 0 or add_tokens < 0 or (add_requests == add_tokens == 0):
                return terms, _slice(row)
            if row is None:
                row = IncludedLease(
                    id=secrets.token_hex(16),
                    subscription_id=sub.id,
                    period=sub.periods,
                    holder=holder[:200],
                    requests=0,
                    tokens=0,
                    used_requests=0,
                    used_tokens=0,
                    expires_at=now + ttl,
                )
                db.add(row)
            row.requests = row.requests + add_requests
            row.tokens = row.tokens + add_tokens
            db.flush()
            return terms, _slice(row)

    def renew_included(self, lease: Slice, used: Measure, ttl: timedelta) -> bool:
        """Write what a lease has used and keep it for `ttl` more; False when it is gone."""
        with self._sessions.begin() as db:
            renewed = update(IncludedLease).where(IncludedLease.id == lease.id)
            values = {
                "used_requests": min(used.requests, lease.requests),
                "used_tokens": min(used.tokens, lease.tokens),
                "expires_at": self._clock() + ttl,
            }
            return _changed(db, renewed.values(**values)) == 1

    def give_back_included(self, account_id: int, lease: Slice, used: Measure) -> bool:
        """End a lease: what it used counts as used in its period (if that period is still
        the current one), the rest is left for others. False when it was gone already."""
        with self._sessions.begin() as db:
            self._touch(db, account_id)
            row = db.get(IncludedLease, lease.id)
            if row is None:
                return False
            sub = db.get(Subscription, row.subscription_id, populate_existing=True)
            if sub is not None and sub.periods == row.period:
                sub.used_requests += min(max(used.requests, row.used_requests), row.requests)
                sub.used_tokens += min(max(used.tokens, row.used_tokens), row.tokens)
            db.delete(row)
            return True

    def included_usage(self, subscription_id: str) -> tuple[Measure, Measure]:
        """(what the current period's returned leases used, what its open leases hold)."""
        with self._sessions() as db:
            sub = db.get(Subscription, subscription_id)
            if sub is None:
                return Measure(), Measure()
            held = Measure()
            for requests, tokens in db.execute(
                select(IncludedLease.requests, IncludedLease.tokens).where(
                    IncludedLease.subscription_id == sub.id, IncludedLease.period == sub.periods
                )
            ):
                held = Measure(held.requests + requests, held.tokens + tokens)
            return Measure(sub.used_requests, sub.used_tokens), held

    def _covering(
        self, db: OrmSession, account_id: int, listing: str, now: datetime
    ) -> Terms | None:
        """The subscription that covers now, renewing first those of the account's to
        `listing` whose period is over (or lapsing them when the balance cannot pay)."""
        rows = db.scalars(
            select(Subscription).where(
                Subscription.account_id == account_id,
                Subscription.listing == listing,
                Subscription.state.in_(_COVERING),
            )
        ).all()
        found: Subscription | None = None
        for row in rows:
            while row.state == "active" and _utc(row.period_end) <= now:
                if not self._pay(db, row):
                    row.state = "lapsed"
            if row.state not in _COVERING or not _utc(row.period_start) <= now < _utc(
                row.period_end
            ):
                continue
            # Subscribed again after cancelling: the new one's terms apply.
            if found is None or (row.state == "active", _utc(row.created_at)) > (
                found.state == "active",
                _utc(found.created_at),
            ):
                found = row
        return None if found is None else _terms(found)

    def _sweep_included(
        self,
        db: OrmSession,
        sub: Subscription,
        until: datetime,
        lease: Slice | None,
        used: Measure,
    ) -> IncludedLease | None:
        """Return the subscription's expired leases and drop those of ended periods; write
        what `lease` used and keep it `until`. The holder's lease row, if it still counts."""
        now = self._clock()
        kept: IncludedLease | None = None
        for row in db.scalars(
            select(IncludedLease).where(IncludedLease.subscription_id == sub.id)
        ).all():
            mine = lease is not None and row.id == lease.id
            if row.period != sub.periods:
                db.delete(row)
            elif mine:
                row.used_requests = min(max(used.requests, row.used_requests), row.requests)
                row.used_tokens = min(max(used.tokens, row.used_tokens), row.tokens)
                row.expires_at = until
                kept = row
            elif _utc(row.expires_at) < now:
                sub.used_requests += row.used_requests
                sub.used_tokens += row.used_tokens
                db.delete(row)
        if lease is not None and kept is None and lease.subscription != sub.id:
            # The holder's lease of another subscription (one that ended): it counts no more.
            db.execute(delete(IncludedLease).where(IncludedLease.id == lease.id))
        db.flush()
        return kept


def _slice(row: IncludedLease | None) -> Slice | None:
    if row is None:
        return None
    return Slice(row.id, row.subscription_id, row.period, row.requests, row.tokens)
