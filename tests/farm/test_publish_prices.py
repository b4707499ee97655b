"""Routes carry the per-token prices of the listing version they serve, for keys' spending
caps."""

from __future__ import annotations

from decimal import Decimal

from formarket.farm.publish import route_for, token_prices
from formarket.schemas.usage import ListingVersion
from tests.farm.factories import deployment


def test_per_token_pricing_in_the_platforms_currency_prices_each_token() -> None:
    pricing = {
        "model": "per_token",
        "currency": "USD",
        "input_per_million": "0.50",
        "output_per_million": "1.50",
    }
    assert token_prices(pricing) == (Decimal("0.0000005"), Decimal("0.0000015"))


def test_other_pricing_prices_no_token() -> None:
    zero = (Decimal(0), Decimal(0))
    assert token_prices({"model": "free"}) == zero
    assert token_prices({"model": "per_request", "currency": "USD", "per_request": "1"}) == zero
    assert token_prices({"model": "per_token", "currency": "USD"}) == zero  # malformed
    assert (
        token_prices(
            {
                "model": "per_token",
                "currency": "EUR",
                "input_per_million": "1",
                "output_per_million": "1",
            }
        )
        == zero
    )
    assert token_prices(None) == zero


def test_a_route_carries_the_prices_of_the_model_it_serves() -> None:
    model = deployment("dep-m", listing="acme/chat", version="1.0.0")
    agent = deployment("dep-a", kind="agent", listing="acme/bot", model_deployment="dep-m")
    desired = {"dep-m": model, "dep-a": agent}
    asked: list[ListingVersion] = []

    def prices(ref: ListingVersion) -> tuple[Decimal, Decimal]:
        asked.append(ref)
        return Decimal("0.001"), Decimal("0.002")

    route = route_for(agent, "http://127.0.0.1:1", desired, prices)
    assert (route.input_price, route.output_price) == (Decimal("0.001"), Decimal("0.002"))
    assert asked == [ListingVersion(id="acme/chat", version="1.0.0")]
    unpriced = route_for(model, "http://127.0.0.1:1", desired)
    assert (unpriced.input_price, unpriced.output_price) == (Decimal(0), Decimal(0))
