"""A control plane over a scratch marketplace (the starter registry), an accounts database
and the GitHub stand-in, served over loopback; and accounts signed in through it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from formarket.accounts import AccountStore, open_database
from formarket.accounts.github_login import GitHubLogin
from formarket.control import Control, create_app
from formarket.control.limits import RateLimiter
from formarket.farm.settings import FarmSettings
from formarket.gateway.server import ServerThread
from formarket.standins.github import StandIn
from tests.accounts.databases import db_url, pg_url
from tests.deploy.conftest import make_market
from tests.gateway.helpers import Client, Reply

__all__ = ["db_url", "pg_url"]

GATEWAY_URL = "http://gateway.example:8080"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium against a built site (select with -m)"
    )


@dataclass
class Plane:
    url: str
    github: StandIn
    store: AccountStore
    control: Control
    market: FarmSettings

    def sign_in(self, login: str) -> str:
        """An account key of `login`, made through the API as `formarket login` does."""
        token = self.github.oauth.token_for(login)
        reply = Client(self.url).request("POST", "/v1/login/github", {"github_token": token})
        assert reply.status == 201, reply.body
        key: str = reply.json()["key"]
        return key

    def call(self, key: str | None, method: str, path: str, body: object = None) -> Reply:
        return Client(self.url, key).request(method, path, body)


@pytest.fixture
def plane_db(tmp_path: Path) -> str:
    """The accounts database of `plane`: SQLite; a module overrides it to run on both."""
    return f"sqlite:///{tmp_path / 'accounts.sqlite'}"


@pytest.fixture
def plane(tmp_path: Path, plane_db: str) -> Iterator[Plane]:
    market = make_market(tmp_path / "market")
    market = FarmSettings(repo=market.repo, branch="main", state=tmp_path / "farm")
    engine = open_database(plane_db)
    store = AccountStore(engine)
    with StandIn() as github:
        github.oauth.add_app("cli-app", "web-secret")
        control = Control(
            store=store,
            farm=market,
            github=lambda: GitHubLogin(
                "cli-app", "web-secret", server_url=github.url, api_url=github.url
            ),
            gateway_url=GATEWAY_URL,
            limiter=RateLimiter(1000.0, 1000),
            sign_in_limiter=RateLimiter(1000.0, 1000),
        )
        with ServerThread(create_app(control)) as server:
            yield Plane(server.url, github, store, control, market)
    engine.dispose()
