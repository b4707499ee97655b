"""Subscriptions: an account pays a tier's price from its balance when it subscribes and at the
start of each period after, a calendar month.

A period is paid only from what no gateway holds (`available`), and only when that covers it:
a subscription never takes a balance below zero. The charge of a subscription's period n is
recorded as `sub-<id>-<n>` in the same transaction that moves the period on, so renewing twice
(two farm cycles, a retry, a gateway that finds the period over: formarket.accounts.included)
charges once. A period the balance cannot pay lapses the
subscription; subscribing again starts a new one. Cancelling stops the renewals; the period
paid for runs to its end.
"""

from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from formarket.accounts.credit import CreditStore, _utc
from formarket.accounts.models import Balance, Charge, Subscription
from formarket.accounts.store import AccountView
from formarket.errors import NotFoundError, UsageError
from formarket.schemas.pricing import SubscriptionTier

__all__ = [
    "AlreadySubscribed",
    "InsufficientCredit",
    "SubscriptionStore",
    "SubscriptionView",
    "Tier",
    "next_period",
]

KIND = "subscription"


class InsufficientCredit(UsageError):
    """The balance does not cover the period's price."""


class AlreadySubscribed(UsageError):
    """The account has an active subscription to the listing."""


@dataclass(frozen=True, slots=True)
class Tier:
    """What a subscription is to: a listing's tier and its terms at subscribe time."""

    listing: str
    name: str
    price: Decimal
    included_requests: int | None
    included_tokens: int | None
    overage_per_request: Decimal | None = None

    @staticmethod
    def of(listing: str, tier: SubscriptionTier) -> Tier:
        """The terms of `tier` of `listing`'s subscription pricing."""
        return Tier(
            listing,
            tier.name,
            tier.monthly,
            tier.included_requests,
            tier.included_tokens,
            tier.overage_per_request,
        )


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: str
    listing: str
    tier: str
    price: Decimal
    included_requests: int | None
    included_tokens: int | None
    state: str
    periods: int
    period_start: datetime
    period_end: datetime
    overage_per_request: Decimal | None = None


def next_period(start: datetime) -> datetime:
    """The same day and time a calendar month later (the month's last day when it is short)."""
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def _view(row: Subscription) -> SubscriptionView:
    return SubscriptionView(
        row.id,
        row.listing,
        row.tier,
        row.price,
        row.included_requests,
        row.included_tokens,
        row.state,
        row.periods,
        _utc(row.period_start),
        _utc(row.period_end),
        row.overage_per_request,
    )


class SubscriptionStore(CreditStore):
    """Subscriptions, charged on the balances of CreditStore."""

    def subscribe(self, account: AccountView, tier: Tier) -> SubscriptionView:
        """Subscribe and pay the first period; InsufficientCredit when the balance does not
        cover it, UsageError when the account has an active subscription to the listing."""
        if not tier.price.is_finite() or tier.price < 0:
            raise UsageError(f"a tier's price is at least 0, not {tier.price}")
        overage = tier.overage_per_request
        if overage is not None and (not overage.is_finite() or overage < 0):
            raise UsageError(f"a tier's overage price is at least 0, not {overage}")
        now = self._clock()
        with self._sessions.begin() as db:
            self._ensure_balance(db, account.id)
            self._touch(db, account.id)
            active = db.scalar(
                select(Subscription.id).where(
                    Subscription.account_id == account.id,
                    Subscription.listing == tier.listing,
                    Subscription.state == "active",
                )
            )
            if active is not None:
                raise AlreadySubscribed(
                    f"you subscribe to {tier.listing} already ({active})",
                    hint=f"cancel it first: DELETE /v1/subscriptions/{active}",
                )
            row = Subscription(
                id=f"sub_{secrets.token_hex(12)}",
                account_id=account.id,
                listing=tier.listing,
                tier=tier.name,
                price=tier.price,
                included_requests=tier.included_requests,
                included_tokens=tier.included_tokens,
                overage_per_request=tier.overage_per_request,
                used_requests=0,
                used_tokens=0,
                state="active",
                periods=0,
                period_start=now,
                period_end=now,
                created_at=now,
            )
            if not self._pay(db, row):
                raise InsufficientCredit(
                    f"{tier.listing} {tier.name} costs {tier.price} a month, more than your"
                    " available balance",
                    hint="top up first: formarket topup",
                )
            db.add(row)
            db.flush()
            return _view(row)

    def subscriptions(self, account: AccountView) -> list[SubscriptionView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(Subscription)
                .where(Subscription.account_id == account.id)
                .order_by(Subscription.created_at, Subscription.id)
            ).all()
        return [_view(r) for r in rows]

    def cancel(self, account: AccountView, subscription_id: str) -> SubscriptionView:
        """Stop the renewals of one of the account's subscriptions (another's is not found)."""
        with self._sessions.begin() as db:
            self._touch(db, account.id)
            row = db.get(Subscription, subscription_id)
            if row is None or row.account_id != account.id:
                raise NotFoundError(f"no subscription {subscription_id} of yours")
            if row.state == "active":
                row.state = "cancelled"
            return _view(row)

    def renew_due(self) -> dict[str, str]:
        """Charge every active subscription whose period has ended for the next one, or lapse
        it when its balance does not cover it: each subscription's outcome (renewed, lapsed).
        Safe to run twice: a period moved on is no longer due."""
        now = self._clock()
        with self._sessions() as db:
            due = db.execute(
                select(Subscription.id, Subscription.account_id).where(
                    Subscription.state == "active", Subscription.period_end <= now
                )
            ).all()
        outcomes: dict[str, str] = {}
        for subscription_id, account_id in due:
            with self._sessions.begin() as db:
                self._touch(db, account_id)
                row = db.get(Subscription, subscription_id, populate_existing=True)
                # Read again under the lock: another renewal may have moved it on.
                while row is not None and row.state == "active" and _utc(row.period_end) <= now:
                    if not self._pay(db, row):
                        row.state = "lapsed"
                        outcomes[subscription_id] = "lapsed"
                        break
                    outcomes[subscription_id] = "renewed"
        return outcomes

    def _pay(self, db: OrmSession, row: Subscription) -> bool:
        """Charge `row`'s next period from what is available, and move its period on; False
        (nothing changed) when the available balance does not cover it."""
        balance = db.get(Balance, row.account_id, populate_existing=True)
        if balance is None or balance.available < row.price:
            return False
        period = row.periods + 1
        db.add(
            Charge(
                id=f"sub-{row.id}-{period}",
                account_id=row.account_id,
                kind=KIND,
                amount=row.price,
                created_at=self._clock(),
            )
        )
        balance.available = balance.available - row.price
        balance.spent = balance.spent + row.price
        start = _utc(row.period_end) if period > 1 else _utc(row.period_start)
        row.periods = period
        row.period_start = start
        row.period_end = next_period(start)
        # A new period's included usage is whole again (leases of the old one no longer count).
        row.used_requests = 0
        row.used_tokens = 0
        db.flush()
        return True
