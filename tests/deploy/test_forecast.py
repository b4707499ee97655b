"""The plan's forecast: what a month would cost at a usage the user gives, by each listing's
terms, in `formarket deploy` and in the control plane's POST /v1/deployments."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.deploy.forecast import HOURS_PER_MONTH, MonthlyUsage, month_cost
from formarket.errors import UsageError
from formarket.farm.settings import FarmSettings
from formarket.schemas.pricing import (
    FreePricing,
    PerInstanceHourPricing,
    PerRequestPricing,
    PerTokenPricing,
    SubscriptionPricing,
    SubscriptionTier,
)
from tests.deploy.test_cli import deploy

TOKENS = PerTokenPricing(
    model="per_token",
    currency="USD",
    input_per_million=Decimal("0.20"),
    output_per_million=Decimal("0.60"),
)


def test_each_kind_of_terms_is_priced_by_its_own_unit() -> None:
    usage = MonthlyUsage(100_000, 500, 200)
    assert month_cost(FreePricing(model="free"), usage)[0] == 0
    per_request = PerRequestPricing(
        model="per_request", currency="USD", per_request=Decimal("0.001")
    )
    assert month_cost(per_request, usage)[0] == Decimal("100.000")
    # 50M input tokens at 0.20 and 20M output tokens at 0.60 per million.
    assert month_cost(TOKENS, usage)[0] == Decimal("22.00")
    hourly = PerInstanceHourPricing(
        model="per_instance_hour", currency="USD", per_hour=Decimal("0.5")
    )
    assert month_cost(hourly, usage)[0] == HOURS_PER_MONTH * Decimal("0.5")


def test_a_subscription_is_its_cheapest_tier_that_covers_the_month() -> None:
    tiers = SubscriptionPricing(
        model="subscription",
        currency="USD",
        tiers=(
            SubscriptionTier(name="small", monthly=Decimal(5), included_requests=1000,
                             overage_per_request=Decimal("0.01")),
            SubscriptionTier(name="large", monthly=Decimal(20), included_requests=100_000),
            SubscriptionTier(name="capped", monthly=Decimal(1), included_requests=10),
        ),
    )  # fmt: skip
    assert month_cost(tiers, MonthlyUsage(1_500)) == (
        Decimal("10.00"),
        "the small tier, 500 requests past its included ones",
    )
    assert month_cost(tiers, MonthlyUsage(50_000))[0] == Decimal(20)
    assert month_cost(tiers, MonthlyUsage(5))[0] == Decimal(1)
    assert month_cost(tiers, MonthlyUsage(200_000))[0] == Decimal("1995.00")


@given(
    calls=st.integers(0, 10**9),
    tokens_in=st.integers(0, 10**6),
    tokens_out=st.integers(0, 10**6),
)
def test_a_per_token_month_is_exact_and_grows_with_the_calls(
    calls: int, tokens_in: int, tokens_out: int
) -> None:
    one, _ = month_cost(TOKENS, MonthlyUsage(calls, tokens_in, tokens_out))
    two, _ = month_cost(TOKENS, MonthlyUsage(calls * 2, tokens_in, tokens_out))
    assert one is not None
    assert two == one * 2
    assert one >= 0


@pytest.mark.parametrize(("calls", "tokens"), [(-1, 0), (10**13, 0), (1, -1), (1, 10**9)])
def test_a_usage_out_of_bounds_is_refused(calls: int, tokens: int) -> None:
    with pytest.raises(UsageError):
        MonthlyUsage(calls, tokens)


def test_deploy_forecasts_a_month(market: FarmSettings) -> None:
    result = deploy(
        market, "tinyforge/faq-bot", "--model", "tinyforge/echo-chat", "--dry-run",
        "--forecast-calls", "10000", "--forecast-input-tokens", "500",
        "--forecast-output-tokens", "200",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "A month at 10,000 calls of 500 input and 200 output tokens each" in result.output
    assert "tinyforge/faq-bot@1.1.0: USD 10.00 (10,000 requests)" in result.output
    assert "tinyforge/echo-chat@1.1.0: free" in result.output
    assert "in all: USD 10.00" in result.output
    as_json = deploy(
        market, "tinyforge/faq-bot", "--dry-run", "--json", "--forecast-calls", "10"
    )  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    month = {f["listing"]: f["amount"] for f in json.loads(as_json.output)["forecast"]}
    assert Decimal(month["tinyforge/faq-bot@1.1.0"]) == Decimal("0.010")
    lonely = deploy(market, "tinyforge/faq-bot", "--dry-run", "--forecast-input-tokens", "5")
    assert lonely.exit_code != 0
    assert "--forecast-calls" in lonely.output
