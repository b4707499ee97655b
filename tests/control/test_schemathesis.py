"""Schemathesis against the control plane's own OpenAPI document, over real HTTP, with a
valid account key: valid and invalid requests generated from the document. No 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    status_code_conformance,
)

from formarket.accounts import AccountStore, open_database
from formarket.accounts.github_login import GitHubLogin
from formarket.control import Control, create_app, openapi_document
from formarket.control.limits import RateLimiter
from formarket.farm.settings import FarmSettings
from formarket.gateway.server import ServerThread
from formarket.standins.github import StandIn
from tests.control.invoicing import close_month
from tests.deploy.conftest import make_market

schema = schemathesis.openapi.from_dict(json.loads(openapi_document()))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)
CHECKS = [status_code_conformance, content_type_conformance, negative_data_rejection]


@dataclass
class Live:
    url: str
    key: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = Path(tmp_path_factory.mktemp("control-st"))
    market = make_market(root / "market")
    farm = FarmSettings(repo=market.repo, branch="main", state=root / "farm")
    engine = open_database(f"sqlite:///{root / 'accounts.sqlite'}")
    store = AccountStore(engine)
    key, _ = store.create_key(store.sign_in("alice", 1))
    with StandIn() as github:
        github.oauth.add_app("cli-app", "")
        control = Control(
            store=store,
            farm=farm,
            github=lambda: GitHubLogin("cli-app", server_url=github.url, api_url=github.url),
            gateway_url="http://127.0.0.1:8080",
            limiter=RateLimiter(1e6, 10**6),
            sign_in_limiter=RateLimiter(1e6, 10**6),
        )
        # An invoice of the key's account, so that the invoice routes answer with one too.
        close_month(control, {"alice": 2}, {"alice": Decimal("5.00")})
        with ServerThread(create_app(control)) as server:
            yield Live(server.url, key)
    engine.dispose()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_control_plane_keeps_the_promises_of_its_openapi_document(
    case: schemathesis.Case, live: Live
) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.key}"},
        checks=CHECKS,
    )
