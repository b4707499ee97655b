"""Prepaid credit at the gateway, on SQLite and PostgreSQL: a call through an account's key
holds the most it can cost before it is forwarded and is refused in OpenAI's
`insufficient_quota` shape when the balance cannot cover it; what it cost is what the balance
loses; two gateway processes on one balance never overspend it. Operators' keys have no
balance and work as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from formarket.accounts import AccountStore, open_database
from formarket.accounts.credit import CreditStore
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from tests.accounts.databases import db_url, pg_url
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client
from tests.gateway.test_account_keys import _gateway

__all__ = ["db_url", "pg_url"]

IN, OUT = Decimal("0.00001"), Decimal("0.00002")
PER_CALL = Decimal("0.25")


def _routes(state: StatePaths, upstream: str) -> None:
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-p",
                endpoint=upstream,
                account="alice",
                model=MODEL,
                input_price=IN,
                output_price=OUT,
            ),
            Route(deployment="dep-free", endpoint=upstream, account="alice", model=MODEL),
            Route(
                deployment="dep-call",
                endpoint=upstream,
                account="alice",
                model=MODEL,
                request_price=PER_CALL,
            ),
        ],
    )


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[AccountStore, CreditStore]]:
    engine = open_database(db_url)
    yield AccountStore(engine), CreditStore(engine)
    engine.dispose()


def _serve(tmp_path: Path, upstream: str, db_url: str) -> ServerThread:
    state = StatePaths(tmp_path / "gw")
    _routes(state, upstream)
    return ServerThread(
        build_gateway(GatewayConfig(state, source="gateway/c", database_url=db_url))
    )


def test_without_credit_a_priced_call_is_refused_as_openai_refuses_it(
    tmp_path: Path, upstream: str, db_url: str, stores: tuple[AccountStore, CreditStore]
) -> None:
    accounts, _ = stores
    key, _ = accounts.create_key(accounts.sign_in("alice", 1))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        refused = client.chat("dep-p", max_tokens=5)
        free = client.chat("dep-free")
    assert refused.status == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert free.status == 200  # a free deployment costs nothing, so needs no credit


def test_a_call_costs_the_balance_what_it_shows(
    tmp_path: Path, upstream: str, db_url: str, stores: tuple[AccountStore, CreditStore]
) -> None:
    accounts, credit = stores
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice)
    credit.grant(alice, Decimal("1.00"))
    shown = Decimal(0)
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        for n in range(5):
            reply = client.chat("dep-p", f"call {n}", max_tokens=8)
            assert reply.status == 200
            shown += Decimal(reply.json()["usage"]["cost"])
        stream = client.chat("dep-p", "stream", stream=True, stream_options={"include_usage": True})
        assert stream.status == 200
        last = [line for line in stream.body.decode().splitlines() if '"usage"' in line][-1]
        shown += Decimal(json.loads(last[6:])["usage"]["cost"])
    # The gateway gave its lease back when it stopped: the balance lost what the calls cost.
    view = credit.balance(alice)
    assert shown > 0
    assert view.spent == shown
    assert view.balance == Decimal("1.00") - shown


def test_calls_priced_per_request_spend_the_balance_until_it_cannot_cover_one(
    tmp_path: Path, upstream: str, db_url: str, stores: tuple[AccountStore, CreditStore]
) -> None:
    accounts, credit = stores
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice)
    credit.grant(alice, Decimal("1.10"))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        answered = [client.chat("dep-call", f"call {n}") for n in range(4)]
        refused = client.chat("dep-call", "one more")
    assert [r.status for r in answered] == [200] * 4
    assert {r.json()["usage"]["cost"] for r in answered} == {"0.25"}
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    view = credit.balance(alice)
    assert view.spent == 4 * PER_CALL
    assert view.balance == Decimal("0.10")


def test_a_call_is_cut_where_its_credit_ends(
    tmp_path: Path, upstream: str, db_url: str, stores: tuple[AccountStore, CreditStore]
) -> None:
    accounts, credit = stores
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice)
    credit.grant(alice, Decimal("0.01"))  # 40 tokens of input and ~480 of output at most
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        reply = client.chat("dep-p", "ignore-max", max_tokens=100_000)
        while reply.status == 200:
            reply = client.chat("dep-p", "ignore-max", max_tokens=100_000)
        assert reply.status == 429
        assert reply.json()["error"]["code"] == "insufficient_quota"
    view = credit.balance(alice)
    assert 0 <= view.balance < Decimal("0.01")
    assert view.spent <= Decimal("0.01")


def test_an_operators_key_has_no_balance_and_works_as_before(
    tmp_path: Path, upstream: str, db_url: str
) -> None:
    key, _ = create_key(StatePaths(tmp_path / "gw").keys, "alice")
    with _serve(tmp_path, upstream, db_url) as server:
        assert Client(server.url, key).chat("dep-p", max_tokens=5).status == 200


def test_two_gateway_processes_never_overspend_one_balance(
    tmp_path: Path, upstream: str, db_url: str, stores: tuple[AccountStore, CreditStore]
) -> None:
    accounts, credit = stores
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice)
    credited = Decimal("0.05")
    credit.grant(alice, credited)
    repo = tmp_path / "market"
    repo.mkdir()
    gateways = []
    try:
        for n in range(2):
            state = StatePaths(tmp_path / f"gw{n}")
            _routes(state, upstream)
            gateways.append(_gateway(state, repo, db_url, tmp_path / f"gw{n}.log"))

        def call(n: int) -> tuple[int, Decimal]:
            _, url = gateways[n % 2]
            reply = Client(url, key).chat("dep-p", f"hello {n}", max_tokens=50)
            cost = Decimal(reply.json()["usage"]["cost"]) if reply.status == 200 else Decimal(0)
            return reply.status, cost

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(400)))
    finally:
        for started, _ in gateways:
            started.stop(grace=10)
    statuses = {status for status, _ in results}
    assert statuses == {200, 429}  # served until the balance ran out, then refused
    spent = sum((cost for _, cost in results), Decimal(0))
    view = credit.balance(alice)
    assert spent <= credited
    assert view.spent == spent
    assert view.available == credited - spent
