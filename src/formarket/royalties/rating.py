"""Rating: a period's usage priced with the terms of the version that served it, and split.

One statement line per (usage or adjustment, usage period, listing version, metric): the exact
amount is quantity × unit price (per million tokens, per hour of 3600 seconds), computed as a
fraction, and rounded once, to the currency's minor unit. The creator's share is then allocated
from the rounded gross by the largest-remainder method, so creator + platform = gross exactly.

Subscriptions are not rated from usage: what a subscriber pays is a monthly fee per tier, and
who subscribed to which tier is not in the repository. Their usage, like that of free listings,
is shown on the statement as unrated. A listing priced in a currency without a known minor unit
is shown the same way rather than rounded by guesswork.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from formarket.royalties.money import (
    MINOR_UNITS,
    Rounding,
    allocate,
    from_minor,
    round_to_minor,
)
from formarket.royalties.pricebook import PriceBook, PriceEntry
from formarket.royalties.tally import Quantities, UsageKey
from formarket.schemas.pricing import (
    FreePricing,
    PerInstanceHourPricing,
    PerRequestPricing,
    PerTokenPricing,
    SubscriptionPricing,
)
from formarket.schemas.usage import StatementLine, UnratedUsage

__all__ = ["RatedLine", "Rating", "rate", "split"]


@dataclass(frozen=True, slots=True)
class RatedLine:
    publisher: str
    currency: str
    line: StatementLine
    gross: int  # minor units
    creator: int
    platform: int


@dataclass(frozen=True, slots=True)
class Rating:
    lines: tuple[RatedLine, ...]
    unrated: tuple[tuple[str, UnratedUsage], ...]  # (publisher, usage)


_MILLION = 1_000_000
_HOUR = 3600


def split(gross: int, royalty_percent: Decimal) -> tuple[int, int]:
    """(creator, platform) minor units of a gross amount, by largest remainder."""
    creator_share = Fraction(royalty_percent) / 100
    parts = allocate(gross, {"creator": creator_share, "platform": 1 - creator_share})
    return parts["creator"], parts["platform"]


def _metrics(entry: PriceEntry, q: Quantities) -> list[tuple[str, int, Decimal, str, Fraction]]:
    """(metric, quantity, unit price, price unit, exact amount) for each charged metric."""
    pricing = entry.pricing
    if isinstance(pricing, PerRequestPricing):
        price = pricing.per_request
        return [("requests", q.requests, price, "request", q.requests * Fraction(price))]
    if isinstance(pricing, PerTokenPricing):
        return [
            (
                "input_tokens",
                q.input_tokens,
                pricing.input_per_million,
                "million tokens",
                q.input_tokens * Fraction(pricing.input_per_million) / _MILLION,
            ),
            (
                "output_tokens",
                q.output_tokens,
                pricing.output_per_million,
                "million tokens",
                q.output_tokens * Fraction(pricing.output_per_million) / _MILLION,
            ),
        ]
    if isinstance(pricing, PerInstanceHourPricing):
        seconds = q.instance_seconds
        return [
            (
                "instance_seconds",
                seconds,
                pricing.per_hour,
                "hour",
                seconds * Fraction(pricing.per_hour) / _HOUR,
            )
        ]
    return []


def rate(usage: Mapping[UsageKey, Quantities], book: PriceBook, rounding: Rounding) -> Rating:
    lines: list[RatedLine] = []
    unrated: list[tuple[str, UnratedUsage]] = []
    for key in sorted(usage):
        kind, usage_period, listing, version = key
        q = usage[key]
        entry = book.get(listing, version)
        if entry is None:
            # The reader sets aside events naming versions that were never published.
            raise AssertionError(f"{listing} {version} was counted but is not in the price book")
        pricing = entry.pricing
        currency = getattr(pricing, "currency", None)
        if isinstance(pricing, FreePricing | SubscriptionPricing) or currency not in MINOR_UNITS:
            label = (
                "free"
                if isinstance(pricing, FreePricing)
                else "subscription"
                if isinstance(pricing, SubscriptionPricing)
                else "unsupported-currency"
            )
            unrated.append(
                (
                    entry.publisher,
                    UnratedUsage(
                        kind=kind,
                        usage_period=usage_period,
                        listing=listing,
                        version=version,
                        pricing=label,
                        events=q.events,
                        requests=q.requests,
                        instance_seconds=q.instance_seconds,
                    ),
                )
            )
            continue
        assert currency is not None
        for metric, quantity, price, unit, exact in _metrics(entry, q):
            if quantity == 0:
                continue
            gross = round_to_minor(exact, currency, rounding)
            creator, platform = split(gross, entry.royalty_percent)
            line = StatementLine(
                kind=kind,
                usage_period=usage_period,
                listing=listing,
                version=version,
                metric=metric,
                quantity=quantity,
                unit_price=price,
                price_unit=unit,
                royalty_percent=entry.royalty_percent,
                gross=from_minor(gross, currency),
                creator=from_minor(creator, currency),
                platform=from_minor(platform, currency),
            )
            lines.append(RatedLine(entry.publisher, currency, line, gross, creator, platform))
    return Rating(tuple(lines), tuple(unrated))
