"""Subscriptions over HTTP: `POST /v1/subscriptions` {listing, tier} subscribes to a tier of a
subscription-priced listing as it is at the marketplace's tip and pays its first month from
the balance; `GET` lists the account's own, with how much of this month's included usage
the gateways have used; `DELETE /v1/subscriptions/{id}` stops one's
renewals. An id that is another account's is not found, as one that does not exist.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, among
them the app's own dependency that names the caller.)"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field

from formarket.accounts.included import IncludedStore
from formarket.accounts.store import AccountView
from formarket.accounts.subscriptions import SubscriptionView, Tier
from formarket.control.context import Control
from formarket.deploy.catalog import Catalog
from formarket.errors import NotFoundError, UsageError
from formarket.farm.settings import open_market
from formarket.registry.git_snapshot import open_git_snapshot
from formarket.schemas._types import LISTING_ID_PATTERN
from formarket.schemas.pricing import PLATFORM_CURRENCY, SubscriptionPricing

__all__ = ["Shown", "add_subscriptions", "subscriptions_of", "tier_of"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SUBSCRIPTION_ID = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{24}$")]


class NewSubscription(BaseModel):
    model_config = _FROZEN
    listing: str = Field(pattern=LISTING_ID_PATTERN, max_length=128, description="Its id.")
    tier: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$", description="One of its tiers' names."
    )


class SubscriptionOut(BaseModel):
    model_config = _FROZEN
    id: str
    listing: str
    tier: str
    price: Decimal = Field(description="What each month costs, in the platform's currency.")
    currency: str
    included_requests: int | None
    included_tokens: int | None
    state: str = Field(description="active, lapsed (a month the balance could not pay), cancelled.")
    periods: int = Field(description="The months paid.")
    period_start: datetime
    period_end: datetime = Field(description="When the next month is charged.")
    overage_per_request: Decimal | None = Field(
        description="What a request beyond the included usage costs; none: the tier sells"
        " no more, and such calls are refused."
    )
    used_requests: int = Field(
        description="Of this month's included requests, those the gateways wrote back as used"
        " (they write each second)."
    )
    used_tokens: int
    held_requests: int = Field(
        description="Of this month's included requests, those the gateways hold for calls"
        " now: used or given back soon."
    )
    held_tokens: int


class SubscriptionList(BaseModel):
    model_config = _FROZEN
    subscriptions: tuple[SubscriptionOut, ...]


def _out(view: SubscriptionView, store: IncludedStore) -> SubscriptionOut:
    used, held = store.included_usage(view.id)
    return SubscriptionOut(
        id=view.id,
        listing=view.listing,
        tier=view.tier,
        price=view.price,
        currency=PLATFORM_CURRENCY,
        included_requests=view.included_requests,
        included_tokens=view.included_tokens,
        state=view.state,
        periods=view.periods,
        period_start=view.period_start,
        period_end=view.period_end,
        overage_per_request=view.overage_per_request,
        used_requests=used.requests,
        used_tokens=used.tokens,
        held_requests=held.requests,
        held_tokens=held.tokens,
    )


@dataclass(frozen=True, slots=True)
class Shown:
    """A subscription as the dashboard shows it: used counts what the gateways hold too."""

    listing: str
    tier: str
    state: str
    price: Decimal
    included_requests: int | None
    included_tokens: int | None
    used_requests: int
    used_tokens: int
    overage: Decimal | None
    period_end: datetime


def subscriptions_of(control: Control, account: AccountView) -> list[Shown]:
    """The account's subscriptions, active first, each with this month's included usage."""
    store = IncludedStore(control.store.engine)
    out = []
    for view in store.subscriptions(account):
        used, held = store.included_usage(view.id)
        out.append(
            Shown(
                view.listing,
                view.tier,
                view.state,
                view.price,
                view.included_requests,
                view.included_tokens,
                used.requests + held.requests,
                used.tokens + held.tokens,
                view.overage_per_request,
                view.period_end,
            )
        )
    return sorted(out, key=lambda s: (s.state != "active", s.listing, s.tier))


def tier_of(control: Control, listing_id: str, tier_name: str) -> Tier:
    """The tier as the listing at the marketplace's tip prices it."""
    repo = open_market(control.farm)
    try:
        catalog = Catalog(open_git_snapshot(repo, control.farm.branch))
        listing = catalog.model(listing_id) or catalog.agent(listing_id)
    finally:
        repo.close()
    if listing is None:
        raise NotFoundError(f"no listing {listing_id}")
    pricing = listing.pricing
    if not isinstance(pricing, SubscriptionPricing):
        raise UsageError(f"{listing_id} is not priced by subscription")
    if pricing.currency != PLATFORM_CURRENCY:
        raise UsageError(
            f"{listing_id} is priced in {pricing.currency}; balances are in {PLATFORM_CURRENCY}"
        )
    for tier in pricing.tiers:
        if tier.name == tier_name:
            return Tier.of(listing_id, tier)
    names = ", ".join(t.name for t in pricing.tiers)
    raise UsageError(f"{listing_id} has no tier {tier_name!r}", hint=f"its tiers: {names}")


def add_subscriptions(app: FastAPI, ctl: Callable[[], Control], account: Any) -> None:
    """The routes, on `app`; `account` is the app's dependency that names the caller."""

    def store() -> IncludedStore:
        return IncludedStore(ctl().store.engine)

    @app.post("/v1/subscriptions", response_model=SubscriptionOut, status_code=201)
    def subscribe(body: NewSubscription, me: account) -> SubscriptionOut:
        """Subscribe to a tier of a subscription-priced listing: its first month is paid from
        your available balance now (refused with `insufficient_quota` when it does not cover
        it), each next month when it starts."""
        assert isinstance(me, AccountView)
        subscriptions = store()
        return _out(
            subscriptions.subscribe(me, tier_of(ctl(), body.listing, body.tier)), subscriptions
        )

    @app.get("/v1/subscriptions", response_model=SubscriptionList)
    def subscriptions(me: account) -> SubscriptionList:
        """Your subscriptions."""
        assert isinstance(me, AccountView)
        subscriptions = store()
        return SubscriptionList(
            subscriptions=tuple(_out(v, subscriptions) for v in subscriptions.subscriptions(me))
        )

    @app.delete("/v1/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    def cancel(subscription_id: _SUBSCRIPTION_ID, me: account) -> SubscriptionOut:
        """Stop one of your subscriptions' renewals; the month paid for runs to its end."""
        assert isinstance(me, AccountView)
        subscriptions = store()
        return _out(subscriptions.cancel(me, subscription_id), subscriptions)
