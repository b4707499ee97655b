"""The whole path of an account's call: a key made through the control plane, a call through
the gateway, the usage flushed to git, and `GET /v1/usage` showing it to its account only."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from dulwich.repo import Repo

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.flush import flush_all
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.standins.openai import StandIn as Upstream
from tests.control.conftest import Plane
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client


def test_an_accounts_calls_show_in_its_usage_only(plane: Plane, tmp_path: Path) -> None:
    alice, bob = plane.sign_in("alice"), plane.sign_in("bob")
    state = StatePaths(tmp_path / "gw")
    database = str(plane.store.engine.url)
    with ServerThread(Upstream()) as upstream:
        save_routes(
            state.routes,
            [
                Route(deployment="dep-a", endpoint=upstream.url, account="alice", model=MODEL),
                Route(deployment="dep-b", endpoint=upstream.url, account="bob", model=MODEL),
            ],
        )
        config = GatewayConfig(
            state, source="gateway/t", segment_seconds=0.1, database_url=database
        )
        with ServerThread(build_gateway(config)) as gateway:
            for _ in range(3):
                assert Client(gateway.url, alice).chat("dep-a").status == 200
            assert Client(gateway.url, bob).chat("dep-b").status == 200
            assert Client(gateway.url, alice).chat("dep-b").status == 404
    repo = Repo(str(plane.market.repo))
    try:
        assert flush_all(repo, state.spool)
    finally:
        repo.close()
    rows = plane.call(alice, "GET", "/v1/usage").json()["rows"]
    assert [(r["deployment"], r["calls"]) for r in rows] == [("dep-a", 3)]
    assert rows[0]["input_tokens"] > 0
    assert [
        (r["deployment"], r["calls"]) for r in plane.call(bob, "GET", "/v1/usage").json()["rows"]
    ] == [("dep-b", 1)]
    day = date.fromisoformat(rows[0]["day"])
    assert plane.call(alice, "GET", f"/v1/usage?since={day}").json()["rows"] == rows
    after = plane.call(alice, "GET", f"/v1/usage?since={day + timedelta(days=1)}").json()
    assert after["rows"] == []
