"""What a month of a deployment would cost at a usage the user gives. Pure.

The usage is a number of calls a month and the tokens of an average call. Each listing of the
plan is priced by its own terms: per request and per token by the calls; per instance-hour by
a month of running (730 hours; scale to zero makes it less); a subscription by its cheapest
tier that covers the calls. An agent's model is priced as if each call to the agent made one
call to the model with the same tokens: what an agent really asks of its model is its code's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from formarket.deploy.checks import PriceLine
from formarket.errors import UsageError
from formarket.schemas.pricing import (
    FreePricing,
    PerInstanceHourPricing,
    PerRequestPricing,
    PerTokenPricing,
    Pricing,
    SubscriptionPricing,
)

__all__ = ["HOURS_PER_MONTH", "Forecast", "MonthlyUsage", "forecast_lines", "month_cost"]

HOURS_PER_MONTH = 730  # 365 × 24 / 12
_MILLION = Decimal(1_000_000)
_CENT = Decimal("0.01")
_MAX_CALLS = 10**12
_MAX_TOKENS = 10**8


@dataclass(frozen=True, slots=True)
class MonthlyUsage:
    """The usage a forecast prices: calls a month, and the tokens of an average call."""

    calls: int
    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.calls <= _MAX_CALLS:
            raise UsageError(f"a month's calls are between 0 and {_MAX_CALLS:,}")
        for tokens in (self.input_tokens, self.output_tokens):
            if not 0 <= tokens <= _MAX_TOKENS:
                raise UsageError(f"a call's tokens are between 0 and {_MAX_TOKENS:,}")


@dataclass(frozen=True, slots=True)
class Forecast:
    """One listing's month: its cost (None: its terms cannot serve that usage) and how."""

    listing: str
    currency: str | None
    amount: Decimal | None
    basis: str


def month_cost(pricing: Pricing | None, usage: MonthlyUsage) -> tuple[Decimal | None, str]:
    """(a month's cost, how it is reckoned) of one listing's terms at `usage`."""
    calls = usage.calls
    if pricing is None or isinstance(pricing, FreePricing):
        return Decimal(0), "free"
    if isinstance(pricing, PerRequestPricing):
        return calls * pricing.per_request, f"{calls:,} requests"
    if isinstance(pricing, PerTokenPricing):
        tokens_in, tokens_out = calls * usage.input_tokens, calls * usage.output_tokens
        cost = (
            tokens_in * pricing.input_per_million + tokens_out * pricing.output_per_million
        ) / _MILLION
        return cost, f"{tokens_in:,} input and {tokens_out:,} output tokens"
    if isinstance(pricing, PerInstanceHourPricing):
        return HOURS_PER_MONTH * pricing.per_hour, f"{HOURS_PER_MONTH} instance-hours"
    assert isinstance(pricing, SubscriptionPricing)
    best: tuple[Decimal, str] | None = None
    tokens = calls * (usage.input_tokens + usage.output_tokens)
    for tier in pricing.tiers:
        if tier.included_tokens is not None and tokens > tier.included_tokens:
            continue  # tokens past a tier's have no price: that tier cannot serve the month
        cost = tier.monthly
        over = 0 if tier.included_requests is None else max(0, calls - tier.included_requests)
        if over:
            if tier.overage_per_request is None:
                continue
            cost += over * tier.overage_per_request
        if best is None or cost < best[0]:
            extra = f", {over:,} requests past its included ones" if over else ""
            best = (cost, f"the {tier.name} tier{extra}")
    if best is None:
        return None, "no tier of its subscription covers this usage"
    return best


def forecast(prices: Sequence[PriceLine], usage: MonthlyUsage) -> list[Forecast]:
    out = []
    for line in prices:
        amount, basis = month_cost(line.pricing, usage)
        out.append(Forecast(line.listing, line.currency, amount, basis))
    return out


def _shown(amount: Decimal) -> str:
    return f"{amount.quantize(_CENT, ROUND_HALF_EVEN):,}"


def forecast_lines(prices: Sequence[PriceLine], usage: MonthlyUsage) -> list[str]:
    """The forecast as lines of the plan."""
    lines = [
        f"A month at {usage.calls:,} calls of {usage.input_tokens:,} input and"
        f" {usage.output_tokens:,} output tokens each would cost:"
    ]
    totals: dict[str, Decimal] = {}
    for item in forecast(prices, usage):
        if item.amount is None:
            lines.append(f"  {item.listing}: cannot be served ({item.basis})")
            continue
        if item.currency is None:
            lines.append(f"  {item.listing}: free")
            continue
        totals[item.currency] = totals.get(item.currency, Decimal(0)) + item.amount
        lines.append(f"  {item.listing}: {item.currency} {_shown(item.amount)} ({item.basis})")
    if totals:
        lines.append(
            "  in all: " + ", ".join(f"{cur} {_shown(amt)}" for cur, amt in sorted(totals.items()))
        )
    return lines
