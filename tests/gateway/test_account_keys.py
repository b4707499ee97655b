"""Accounts' keys at the gateway, on SQLite and PostgreSQL: valid ones are served, scoped ones
reach their one deployment, and a revoked or expired key is refused from the next call on, in
every gateway process that shares the database."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from formarket.accounts import AccountStore, open_database
from formarket.gateway.account_keys import Authenticator
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.process import Runner, Started
from tests.accounts.databases import db_url, pg_url
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client

__all__ = ["db_url", "pg_url"]


def _routes(state: StatePaths, upstream: str) -> None:
    save_routes(
        state.routes,
        [
            Route(deployment="dep-a1", endpoint=upstream, account="alice", model=MODEL),
            Route(deployment="dep-a2", endpoint=upstream, account="alice", model=MODEL),
            Route(deployment="dep-m", endpoint=upstream, account="mallory", model=MODEL),
        ],
    )


@pytest.fixture
def accounts(db_url: str) -> Iterator[AccountStore]:
    store = AccountStore(open_database(db_url))
    yield store
    store.engine.dispose()


@pytest.fixture
def served(tmp_path: Path, upstream: str, db_url: str) -> Iterator[str]:
    state = StatePaths(tmp_path / "gw")
    _routes(state, upstream)
    config = GatewayConfig(state, source="gateway/acc", database_url=db_url)
    with ServerThread(build_gateway(config)) as server:
        yield server.url


def test_an_accounts_key_calls_its_own_deployments_only(
    served: str, accounts: AccountStore
) -> None:
    alice = accounts.sign_in("alice", 1)
    mallory = accounts.sign_in("mallory", 2)
    key, _ = accounts.create_key(alice)
    client = Client(served, key)
    assert client.chat("dep-a1").status == 200
    assert client.chat("dep-a2").status == 200
    assert client.chat("dep-m").status == 404  # mallory's deployment, not alice's
    models = {m["id"] for m in client.request("GET", "/v1/models").json()["data"]}
    assert "dep-m" not in models
    assert {"dep-a1", "dep-a2"} <= models
    mallory_key, _ = accounts.create_key(mallory)
    assert Client(served, mallory_key).chat("dep-a1").status == 404


def test_a_scoped_key_reaches_its_one_deployment(served: str, accounts: AccountStore) -> None:
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice, deployment="dep-a2")
    client = Client(served, key)
    assert client.chat("dep-a2").status == 200
    assert client.chat("dep-a1").status == 404


def test_revoked_and_wrong_keys_are_refused(served: str, accounts: AccountStore) -> None:
    alice = accounts.sign_in("alice", 1)
    key, view = accounts.create_key(alice)
    client = Client(served, key)
    assert client.chat("dep-a1").status == 200
    accounts.revoke_key(alice, view.id)
    assert client.chat("dep-a1").status == 401
    other, _ = accounts.create_key(alice)
    assert Client(served, other[:-2] + "xx").chat("dep-a1").status == 401
    assert Client(served, other).chat("dep-a1").status == 200


def test_an_expired_key_is_refused_though_it_was_believed(
    served: str, accounts: AccountStore
) -> None:
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice, expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    client = Client(served, key)
    assert client.chat("dep-a1").status == 200
    time.sleep(1.6)
    assert client.chat("dep-a1").status == 401


def test_operator_keys_still_work_beside_accounts_keys(
    tmp_path: Path, upstream: str, db_url: str
) -> None:
    state = StatePaths(tmp_path / "gw")
    _routes(state, upstream)
    key, _ = create_key(state.keys, "alice")
    config = GatewayConfig(state, source="gateway/acc", database_url=db_url)
    with ServerThread(build_gateway(config)) as server:
        assert Client(server.url, key).chat("dep-a1").status == 200


class _Asking:
    """An exchange that asks for a deployment no key reaches: it is answered once its key is
    checked (401) or believed (404), without a deployment."""

    method = "POST"
    path = "/v1/chat/completions"
    started = False

    def __init__(self, key: str) -> None:
        self.headers: list[tuple[bytes, bytes]] = [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ]
        self.status = 0

    async def read(self) -> tuple[bytes, bool]:
        return b'{"model": "dep-none", "messages": [{"role": "user", "content": "hi"}]}', False

    def respond(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        self.started, self.status = True, status

    def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        raise AssertionError("nothing is streamed")

    async def send(self, data: bytes) -> None:
        raise AssertionError("nothing is streamed")

    def finish(self, data: bytes = b"") -> None:
        raise AssertionError("nothing is streamed")

    def on_gone(self, callback: Callable[[], None]) -> None:
        pass


def test_calls_in_one_turn_of_the_loop_share_a_key_check_and_the_next_turn_sees_a_revocation(
    tmp_path: Path, db_url: str, accounts: AccountStore
) -> None:
    state = StatePaths(tmp_path / "gw")
    _routes(state, "http://127.0.0.1:9")
    gateway = build_gateway(GatewayConfig(state, source="gateway/acc", database_url=db_url))
    check = gateway.keys
    asked: list[int] = []

    def counted() -> Authenticator:
        asked.append(1)
        return check()

    gateway.keys = counted
    alice = accounts.sign_in("alice", 1)
    key, view = accounts.create_key(alice)

    async def served() -> list[int]:
        statuses = []
        for _ in range(3):  # one turn: nothing here waits for the loop
            exchange = _Asking(key)
            await gateway.handle(exchange)
            statuses.append(exchange.status)
        assert len(asked) == 1
        await asyncio.sleep(0)  # the next turn asks again, and sees the revocation
        await asyncio.to_thread(accounts.revoke_key, alice, view.id)
        exchange = _Asking(key)
        await gateway.handle(exchange)
        assert len(asked) == 2
        return [*statuses, exchange.status]

    async def calls() -> list[int]:
        await gateway.startup()
        try:
            return await served()
        finally:
            await gateway.shutdown()

    assert asyncio.run(calls()) == [404, 404, 404, 401]


def _gateway(state: StatePaths, repo: Path, db: str, log: Path) -> tuple[Started, str]:
    env = {**os.environ, "FORMARKET_DATABASE_URL": db}
    argv = [sys.executable, "-m", "formarket", "gateway", "serve", "--repo", str(repo)]
    argv += ["--gateway-dir", str(state.root), "--port", "0", "--source", "gateway/p"]
    with log.open("wb") as output:
        started = Runner().start(argv, output=output, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for word in log.read_text(errors="replace").split():
            if word.startswith("http://"):
                return started, word
        if started.poll() is not None:
            break
        time.sleep(0.05)
    started.stop(grace=5)
    raise AssertionError(log.read_text(errors="replace"))


def test_a_revocation_in_one_process_reaches_every_gateway_process_at_once(
    tmp_path: Path, upstream: str, db_url: str, accounts: AccountStore
) -> None:
    repo = tmp_path / "market"
    repo.mkdir()
    gateways = []
    try:
        for n in range(2):
            state = StatePaths(tmp_path / f"gw{n}")
            _routes(state, upstream)
            gateways.append(_gateway(state, repo, db_url, tmp_path / f"gw{n}.log"))
        alice = accounts.sign_in("alice", 1)
        key, view = accounts.create_key(alice)
        clients = [Client(url, key) for _, url in gateways]
        for _ in range(3):  # each gateway now believes the key without asking the database
            assert all(client.chat("dep-a1").status == 200 for client in clients)
        accounts.revoke_key(alice, view.id)
        assert [client.chat("dep-a1").status for client in clients] == [401, 401]
    finally:
        for started, _ in gateways:
            started.stop(grace=10)
