"""What a user pays, as a tagged union on `model`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from formarket.schemas._base import Document
from formarket.schemas._types import Amount, CurrencyCode, Percent

__all__ = [
    "PLATFORM_CURRENCY",
    "FreePricing",
    "Metric",
    "Monetization",
    "PerInstanceHourPricing",
    "PerRequestPricing",
    "PerTokenPricing",
    "Pricing",
    "SubscriptionPricing",
    "SubscriptionTier",
]

# The currency the gateway charges in: account balances, the cost shown with each call, the
# per-token prices routes carry (a listing priced in another currency prices no token there).
PLATFORM_CURRENCY = "USD"

Metric = Literal["requests", "input_tokens", "output_tokens", "instance_hours"]


class FreePricing(Document):
    """No charge."""

    model: Literal["free"]


class PerRequestPricing(Document):
    """A price per call."""

    model: Literal["per_request"]
    currency: CurrencyCode
    per_request: Amount = Field(description="Price of one request.")


class PerTokenPricing(Document):
    """Prices per million input and output tokens, as model APIs are usually priced."""

    model: Literal["per_token"]
    currency: CurrencyCode
    input_per_million: Amount = Field(description="Price of one million input tokens.")
    output_per_million: Amount = Field(description="Price of one million output tokens.")


class PerInstanceHourPricing(Document):
    """A price per hour that a deployment runs, whatever it does."""

    model: Literal["per_instance_hour"]
    currency: CurrencyCode
    per_hour: Amount = Field(description="Price of one instance-hour.")


class SubscriptionTier(Document):
    """One tier of a subscription."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")
    monthly: Amount = Field(description="Price per month.")
    included_requests: int | None = Field(default=None, ge=0)
    included_tokens: int | None = Field(default=None, ge=0)
    overage_per_request: Amount | None = Field(
        default=None, description="Price of each request past the included ones."
    )


class SubscriptionPricing(Document):
    """Monthly tiers."""

    model: Literal["subscription"]
    currency: CurrencyCode
    tiers: tuple[SubscriptionTier, ...] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _tier_names_unique(self) -> SubscriptionPricing:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return self


Pricing = Annotated[
    FreePricing
    | PerRequestPricing
    | PerTokenPricing
    | PerInstanceHourPricing
    | SubscriptionPricing,
    Field(discriminator="model"),
]


class Monetization(Document):
    """What the gateway meters for this listing, and the creator's share of what it earns."""

    metered: tuple[Metric, ...] = Field(
        default=("requests",), description="The metrics recorded for every call."
    )
    royalty_percent: Percent = Field(
        description="The creator's share of gross revenue, from 0 to 100; the platform keeps"
        " the rest."
    )
