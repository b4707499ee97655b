"""What the farm tells the gateway: the endpoint of every running deployment (routes.json).

Written whole and atomically after every reconcile cycle from what libvirt reports running,
so a stopped or vanished deployment stops being routed within one cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from formarket.gateway.routes import Route, load_routes, save_routes
from formarket.schemas.deployment import Deployment
from formarket.schemas.pricing import PerTokenPricing
from formarket.schemas.usage import ListingVersion
from formarket.usage.events import Served

__all__ = ["publish_routes", "route_for", "routes_for", "served_by", "token_prices"]

# The currency keys' spending caps are in.
PLATFORM_CURRENCY = "USD"
_MILLION = Decimal(1_000_000)
Prices = Callable[[ListingVersion], tuple[Decimal, Decimal]]


def token_prices(pricing: object) -> tuple[Decimal, Decimal]:
    """(input, output) price of one token from a listing's `pricing`: per-token pricing in
    the platform's currency, divided by a million; anything else prices no token (0, 0)."""
    if not isinstance(pricing, dict) or pricing.get("model") != "per_token":
        return Decimal(0), Decimal(0)
    try:
        terms = PerTokenPricing.model_validate(pricing)
    except ValidationError:
        return Decimal(0), Decimal(0)
    if terms.currency != PLATFORM_CURRENCY:
        return Decimal(0), Decimal(0)
    return terms.input_per_million / _MILLION, terms.output_per_million / _MILLION


def _ref(deployment: Deployment) -> ListingVersion:
    return ListingVersion(id=deployment.listing.id, version=deployment.listing.version)


def route_for(
    deployment: Deployment,
    endpoint: str,
    desired: Mapping[str, Deployment],
    prices: Prices | None = None,
) -> Route:
    """The route of a running deployment; `prices` gives a listing version's per-token prices
    (those of the model it serves, else of the agent)."""
    model: ListingVersion | None = None
    agent: ListingVersion | None = None
    if deployment.kind == "model":
        model = _ref(deployment)
    else:
        agent = _ref(deployment)
        partner = desired.get(deployment.model_deployment or "")
        model = _ref(partner) if partner is not None else None
    priced = model or agent
    input_price, output_price = (
        prices(priced) if prices is not None and priced is not None else (Decimal(0), Decimal(0))
    )
    return Route(
        deployment=deployment.id,
        endpoint=endpoint,
        account=deployment.account,
        agent=agent,
        model=model,
        input_price=input_price,
        output_price=output_price,
    )


def routes_for(
    desired: Mapping[str, Deployment],
    endpoints: Mapping[str, str],
    prices: Prices | None = None,
) -> list[Route]:
    """A route for each running deployment that git still wants running."""
    return [
        route_for(desired[dep_id], endpoint, desired, prices)
        for dep_id, endpoint in sorted(endpoints.items())
        if dep_id in desired and desired[dep_id].state == "running"
    ]


def served_by(routes: list[Route]) -> dict[str, Served]:
    return {route.deployment: route.served() for route in routes}


def publish_routes(path: Path, routes: list[Route]) -> bool:
    """Replace routes.json when it differs; whether it changed."""
    if path.exists() and list(load_routes(path).routes) == sorted(
        routes, key=lambda r: r.deployment
    ):
        return False
    save_routes(path, routes)
    return True
