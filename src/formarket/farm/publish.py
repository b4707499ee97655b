"""What the farm tells the gateway: the endpoint of every running deployment (routes.json).

Written whole and atomically after every reconcile cycle from what libvirt reports running,
so a stopped or vanished deployment stops being routed within one cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from formarket.gateway.routes import Route, load_routes, save_routes
from formarket.schemas.deployment import Deployment
from formarket.schemas.usage import ListingVersion
from formarket.usage.events import Served

__all__ = ["publish_routes", "route_for", "routes_for", "served_by"]


def _ref(deployment: Deployment) -> ListingVersion:
    return ListingVersion(id=deployment.listing.id, version=deployment.listing.version)


def route_for(deployment: Deployment, endpoint: str, desired: Mapping[str, Deployment]) -> Route:
    model: ListingVersion | None = None
    agent: ListingVersion | None = None
    if deployment.kind == "model":
        model = _ref(deployment)
    else:
        agent = _ref(deployment)
        partner = desired.get(deployment.model_deployment or "")
        model = _ref(partner) if partner is not None else None
    return Route(
        deployment=deployment.id,
        endpoint=endpoint,
        account=deployment.account,
        agent=agent,
        model=model,
    )


def routes_for(desired: Mapping[str, Deployment], endpoints: Mapping[str, str]) -> list[Route]:
    """A route for each running deployment that git still wants running."""
    return [
        route_for(desired[dep_id], endpoint, desired)
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
