"""Routes carry the per-token prices of the listing version they serve, for keys' spending
caps."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from formarket.farm.publish import (
    CallPrices,
    by_subscription,
    call_prices,
    request_price,
    route_for,
    token_prices,
)
from formarket.farm.running import prices_of as _prices
from formarket.farm.settings import FarmSettings
from formarket.market.repository import create_repository
from formarket.market.writer import commit_changes
from formarket.schemas.usage import ListingVersion
from tests.farm.factories import deployment
from tests.royalties.helpers import MAINTAINER, Offer, listing_yaml


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


def test_a_route_carries_the_prices_of_the_listing_a_close_credits() -> None:
    model = deployment("dep-m", listing="acme/chat", version="1.0.0")
    agent = deployment("dep-a", kind="agent", listing="acme/bot", model_deployment="dep-m")
    desired = {"dep-m": model, "dep-a": agent}
    asked: list[ListingVersion] = []

    def prices(ref: ListingVersion) -> CallPrices:
        asked.append(ref)
        return CallPrices(Decimal("0.001"), Decimal("0.002"), Decimal("0.01"))

    # An agent's call is credited to the agent; its calls to its model are the model's own.
    route = route_for(agent, "http://127.0.0.1:1", desired, prices=prices)
    assert (route.input_price, route.output_price, route.request_price) == (
        Decimal("0.001"),
        Decimal("0.002"),
        Decimal("0.01"),
    )
    assert asked == [ListingVersion(id="acme/bot", version="1.0.0")]
    route_for(model, "http://127.0.0.1:1", desired, prices=prices)
    assert asked[-1] == ListingVersion(id="acme/chat", version="1.0.0")
    unpriced = route_for(model, "http://127.0.0.1:1", desired)
    assert (unpriced.input_price, unpriced.output_price, unpriced.request_price) == (0, 0, 0)
    assert not unpriced.priced


def test_per_request_pricing_prices_each_call() -> None:
    assert request_price({"model": "per_request", "currency": "USD", "per_request": "0.002"}) == (
        Decimal("0.002")
    )
    assert call_prices({"model": "per_request", "currency": "USD", "per_request": "1"}) == (
        CallPrices(Decimal(0), Decimal(0), Decimal(1))
    )
    for other in (
        {"model": "per_request", "currency": "EUR", "per_request": "1"},
        {"model": "per_request", "currency": "USD"},
        {"model": "per_token", "currency": "USD", "input_per_million": "1",
         "output_per_million": "1"},
        {"model": "free"},
        None,
        "per_request",
    ):  # fmt: skip
        assert request_price(other) == 0


def test_a_deployment_of_an_older_version_reserves_that_versions_prices(tmp_path: Path) -> None:
    # A version no longer at the branch tip still runs, and its calls still cost what that
    # version was published at: a spending cap must count them.
    repo = create_repository(tmp_path / "market")
    first = Offer("model", "acme/chat", "1.0.0", _per_token("1.00", "2.00"))
    second = Offer("model", "acme/chat", "1.1.0", _per_token("3.00", "4.00"))
    for offer in (first, second):
        commit_changes(repo, "main", {offer.path: listing_yaml(offer)}, "Publish", MAINTAINER)
    repo.close()
    settings = FarmSettings.from_env(
        tmp_path, {"FORMARKET_REPO": str(tmp_path / "market"), "FORMARKET_STATE": "farm"}
    )
    prices = _prices(settings)
    assert prices(ListingVersion(id="acme/chat", version="1.0.0"))[:2] == (
        Decimal("0.000001"),
        Decimal("0.000002"),
    )
    assert prices(ListingVersion(id="acme/chat", version="1.1.0"))[:2] == (
        Decimal("0.000003"),
        Decimal("0.000004"),
    )
    assert prices(ListingVersion(id="acme/chat", version="9.9.9")) == (0, 0, 0, False)


def test_a_route_of_a_version_priced_by_subscription_says_so() -> None:
    # A subscriber's calls to it draw on its tier at the gateway (formarket.gateway.included).
    pricing = {
        "model": "subscription",
        "currency": "USD",
        "tiers": [{"name": "Hobby", "monthly": "9.00", "included_requests": 500}],
    }
    assert by_subscription(pricing)
    assert call_prices(pricing) == CallPrices(Decimal(0), Decimal(0), Decimal(0), True)
    assert not by_subscription({**pricing, "currency": "EUR"})  # balances are in USD
    assert not by_subscription({**pricing, "tiers": []})  # malformed
    assert not by_subscription({"model": "free"})
    model = deployment("dep-m", listing="acme/chat", version="1.0.0")
    route = route_for(
        model, "http://127.0.0.1:1", {"dep-m": model}, prices=lambda _: call_prices(pricing)
    )
    assert route.subscription
    assert not route.priced
    assert route.priced_by == "acme/chat"
    assert not route_for(model, "http://127.0.0.1:1", {"dep-m": model}).subscription


def _per_token(input_price: str, output_price: str) -> dict[str, str]:
    return {
        "model": "per_token",
        "currency": "USD",
        "input_per_million": input_price,
        "output_per_million": output_price,
    }
