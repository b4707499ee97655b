"""Fixtures: a stand-in deployment and a gateway in front of it, served over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.schemas.usage import ListingVersion
from formarket.standins.openai import StandIn
from tests.gateway.helpers import Client

MODEL = ListingVersion(id="acme/llama-8b", version="1.2.0")
AGENT = ListingVersion(id="acme/helper", version="0.3.0")


@dataclass
class Setup:
    url: str
    key: str
    paths: StatePaths
    upstream: str

    def client(self) -> Client:
        return Client(self.url, self.key)


@pytest.fixture
def upstream() -> Iterator[str]:
    with ServerThread(StandIn()) as server:
        yield server.url


@pytest.fixture
def state(tmp_path: Path) -> StatePaths:
    return StatePaths(tmp_path / "state")


@pytest.fixture
def gateway(state: StatePaths, upstream: str) -> Iterator[Setup]:
    """A gateway routing dep-1 (agent + model) and dep-2 (model) of account acme."""
    save_routes(
        state.routes,
        [
            Route(deployment="dep-1", endpoint=upstream, account="acme", agent=AGENT, model=MODEL),
            Route(deployment="dep-2", endpoint=upstream, account="acme", model=MODEL),
            Route(deployment="dep-other", endpoint=upstream, account="zeta", model=MODEL),
        ],
    )
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    app = build_gateway(GatewayConfig(state, source="gateway/test", segment_seconds=0.2))
    with ServerThread(app) as server:
        yield Setup(server.url, key, state, upstream)
