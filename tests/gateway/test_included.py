"""Subscriptions' included usage at the gateway, on SQLite and PostgreSQL: a subscriber's
calls to the listing it subscribes to cost nothing until its tier's included usage for the
period is used, then the tier's overage price from its credit, or are refused in OpenAI's
`insufficient_quota` shape; a call is cut where its included tokens end; two gateway processes
never serve more included calls than the tier has; and, for any calls at once over two
processes' leases, never more than the tier includes (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from formarket.accounts import AccountStore, AccountView, open_database
from formarket.accounts.included import IncludedStore
from formarket.accounts.subscriptions import Tier, next_period
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.included import Beyond, IncludedHold, IncludedUsage
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.schemas.usage import ListingVersion
from tests.accounts.databases import db_url, pg_url
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client
from tests.gateway.test_account_keys import _gateway

__all__ = ["db_url", "pg_url"]

SKETCH = ListingVersion(id="lumen-labs/sketch-turbo", version="1.0.0")


def _routes(state: StatePaths, upstream: str) -> None:
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-sub",
                endpoint=upstream,
                account="alice",
                model=SKETCH,
                subscription=True,
            ),
            Route(deployment="dep-free", endpoint=upstream, account="alice", model=MODEL),
        ],
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


def _alice(engine: Engine, tier: Tier, credit: Decimal) -> tuple[AccountView, str, IncludedStore]:
    """alice, subscribed to `tier` (its price paid from a grant) with `credit` left, and a key."""
    accounts, store = AccountStore(engine), IncludedStore(engine)
    alice = accounts.sign_in("alice", 1)
    store.grant(alice, tier.price + credit)
    store.subscribe(alice, tier)
    key, _ = accounts.create_key(alice)
    return alice, key, store


def _serve(tmp_path: Path, upstream: str, db_url: str) -> ServerThread:
    state = StatePaths(tmp_path / "gw")
    _routes(state, upstream)
    return ServerThread(
        build_gateway(GatewayConfig(state, source="gateway/s", database_url=db_url))
    )


def _tier(requests: int | None, tokens: int | None, overage: str | None) -> Tier:
    return Tier(
        SKETCH.id,
        "Hobby",
        Decimal("9.00"),
        requests,
        tokens,
        None if overage is None else Decimal(overage),
    )


def test_included_calls_cost_nothing_then_the_overage_price_until_credit_ends(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    alice, key, store = _alice(engine, _tier(3, None, "0.25"), Decimal("0.60"))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        included = [client.chat("dep-sub", f"call {n}", max_tokens=5) for n in range(3)]
        beyond = [client.chat("dep-sub", f"more {n}", max_tokens=5) for n in range(2)]
        refused = client.chat("dep-sub", "one too many", max_tokens=5)
    assert [r.status for r in included] == [200] * 3
    assert {r.json()["usage"]["cost"] for r in included} == {"0"}
    assert all(r.headers["x-formarket-call"] for r in included)  # the receipt, as before
    assert [r.status for r in beyond] == [200] * 2
    assert {r.json()["usage"]["cost"] for r in beyond} == {"0.25"}
    assert refused.status == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    view = store.balance(alice)
    assert view.balance == Decimal("0.10")
    assert view.spent == Decimal("9.00") + 2 * Decimal("0.25")
    (sub,) = store.subscriptions(alice)
    used, held = store.included_usage(sub.id)
    assert used.requests == 3
    assert held.requests == 0  # the gateway gave its lease back when it stopped


def test_beyond_the_included_usage_a_tier_without_overage_refuses(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    _, key, _ = _alice(engine, _tier(2, None, None), Decimal("5.00"))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        statuses = [client.chat("dep-sub", f"call {n}", max_tokens=5).status for n in range(3)]
        refused = client.chat("dep-sub", "again", max_tokens=5)
        free = client.chat("dep-free")  # another listing: the subscription is not asked
    assert statuses == [200, 200, 429]
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "sketch-turbo" in refused.json()["error"]["message"]
    assert free.status == 200


def test_a_call_is_cut_where_its_included_tokens_end(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    alice, key, store = _alice(engine, _tier(None, 120, None), Decimal(0))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        billed = 0
        replies = []
        for n in range(20):
            reply = client.chat("dep-sub", f"ignore-max {n}", max_tokens=100_000)
            replies.append(reply.status)
            if reply.status != 200:
                break
            usage = reply.json()["usage"]
            assert usage["cost"] == "0"
            billed += usage["total_tokens"]
        stream = client.chat(
            "dep-sub", "stream", stream=True, stream_options={"include_usage": True}
        )
    assert replies[0] == 200
    assert replies[-1] == 429
    assert 0 < billed <= 120
    if stream.status == 200:
        last = [line for line in stream.body.decode().splitlines() if '"usage"' in line][-1]
        billed += json.loads(last[6:])["usage"]["total_tokens"]
    assert billed <= 120
    (sub,) = store.subscriptions(alice)
    used, _ = store.included_usage(sub.id)
    assert used.tokens == billed


def test_without_a_subscription_a_listing_sold_by_subscription_is_refused(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    accounts = AccountStore(engine)
    key, _ = accounts.create_key(accounts.sign_in("alice", 1))
    with _serve(tmp_path, upstream, db_url) as server:
        client = Client(server.url, key)
        refused = client.chat("dep-sub", max_tokens=5)
        free = client.chat("dep-free")  # a listing not sold by subscription is served
    assert refused.status == 403
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "subscription_required")
    assert "subscribe to one of its tiers first" in error["message"]
    assert free.status == 200


def test_two_gateway_processes_never_serve_more_included_calls_than_the_tier_has(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    alice, key, store = _alice(engine, _tier(25, None, None), Decimal(0))
    repo = tmp_path / "market"
    repo.mkdir()
    gateways = []
    try:
        for n in range(2):
            state = StatePaths(tmp_path / f"gw{n}")
            _routes(state, upstream)
            gateways.append(_gateway(state, repo, db_url, tmp_path / f"gw{n}.log"))

        def call(n: int) -> int:
            _, url = gateways[n % 2]
            return Client(url, key).chat("dep-sub", f"hello {n}", max_tokens=5).status

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, range(200)))
    finally:
        for started, _ in gateways:
            started.stop(grace=10)
    assert set(statuses) == {200, 429}
    served = statuses.count(200)
    assert served <= 25
    (sub,) = store.subscriptions(alice)
    used, held = store.included_usage(sub.id)
    assert used.requests == served
    assert held.requests == 0


# --- any calls at once, over two processes' leases -------------------------------------

_CALL = st.tuples(
    st.integers(0, 1),  # which process
    st.integers(1, 60),  # the tokens the call asks to hold
    st.integers(0, 60),  # of those, what it uses
    st.integers(0, 3),  # turns of the event loop it lasts
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.lists(_CALL, min_size=1, max_size=40),
    requests=st.integers(0, 12),
    tokens=st.integers(0, 400),
    maintain=st.lists(st.integers(0, 39), max_size=4),
)
def test_concurrent_calls_never_use_more_included_usage_than_the_tier_has(
    tmp_path_factory: pytest.TempPathFactory,
    calls: list[tuple[int, int, int, int]],
    requests: int,
    tokens: int,
    maintain: list[int],
) -> None:
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('inc') / 'a.sqlite'}")
    try:
        accounts, store = AccountStore(engine), IncludedStore(engine)
        who = accounts.sign_in(f"u{secrets.token_hex(4)}", 1)
        store.grant(who, Decimal(9))
        store.subscribe(who, _tier(requests, tokens, "0.01"))
        processes = [
            IncludedUsage(IncludedStore(engine), f"p{n}", headroom=2, idle_return=0.0)
            for n in range(2)
        ]
        used = [0, 0]  # requests, tokens the calls used

        async def one(n: int, process: int, want: int, use: int, turns: int) -> None:
            usage = processes[process]
            if n in maintain:
                await usage.maintain()
            found = await usage.hold(who.id, SKETCH.id, max(1, want // 2), want)
            if isinstance(found, Beyond):
                assert found.overage == Decimal("0.01")
                return
            assert isinstance(found, IncludedHold)
            for _ in range(turns):
                await asyncio.sleep(0)
            tokens_used = min(use, found.tokens)
            usage.settle(found, tokens_used)
            used[0] += found.requests
            used[1] += tokens_used

        async def run() -> None:
            await asyncio.gather(*(one(n, *call) for n, call in enumerate(calls)))
            for usage in processes:
                await usage.maintain()
                usage.close()

        asyncio.run(run())
        assert used[0] <= requests
        assert used[1] <= tokens
        (sub,) = store.subscriptions(who)
        counted, held = store.included_usage(sub.id)
        assert (counted.requests, counted.tokens) == (used[0], used[1])
        assert (held.requests, held.tokens) == (0, 0)
    finally:
        engine.dispose()


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self.monotonic = 0.0

    def __call__(self) -> datetime:
        return self.now


def test_a_new_period_is_there_at_the_first_call_that_finds_the_old_one_over(
    engine: Engine,
) -> None:
    clock = _Clock()
    accounts, store = AccountStore(engine), IncludedStore(engine, clock=clock)
    alice = accounts.sign_in("alice", 1)
    store.grant(alice, Decimal("18.00"))
    store.subscribe(alice, _tier(2, None, None))
    usage = IncludedUsage(
        IncludedStore(engine, clock=clock),
        "p",
        wall=lambda: clock.now.timestamp(),
        clock=lambda: clock.monotonic,
    )

    async def calls(n: int) -> list[str]:
        seen = []
        for _ in range(n):
            found = await usage.hold(alice.id, SKETCH.id, 1, 1)
            if isinstance(found, IncludedHold):
                usage.settle(found, 1)
            seen.append(type(found).__name__)
        return seen

    async def run() -> None:
        assert await calls(3) == ["IncludedHold", "IncludedHold", "Beyond"]
        # The month ends: the next call renews the subscription (its next month paid from
        # the balance, once) and draws on the new month's included usage.
        clock.now = next_period(clock.now)
        clock.monotonic += 10
        assert await calls(3) == ["IncludedHold", "IncludedHold", "Beyond"]
        # The month after cannot be paid: the subscription lapses, and calls go as a
        # non-subscriber's.
        clock.now = next_period(clock.now)
        clock.monotonic += 10
        assert await calls(1) == ["NoneType"]
        await usage.maintain()
        await asyncio.to_thread(usage.close)

    asyncio.run(run())
    (sub,) = store.subscriptions(alice)
    assert (sub.state, sub.periods) == ("lapsed", 2)
    assert store.balance(alice).balance == Decimal(0)


def test_a_new_subscriber_is_seen_within_the_recheck(engine: Engine) -> None:
    clock = _Clock()
    accounts, store = AccountStore(engine), IncludedStore(engine, clock=clock)
    alice = accounts.sign_in("alice", 1)
    store.grant(alice, Decimal("9.00"))
    usage = IncludedUsage(IncludedStore(engine, clock=clock), "p", clock=lambda: clock.monotonic)

    async def run() -> None:
        assert await usage.hold(alice.id, SKETCH.id, 1, 1) is None
        store.subscribe(alice, _tier(5, None, None))
        assert await usage.hold(alice.id, SKETCH.id, 1, 1) is None  # believed a while
        clock.monotonic += usage.recheck
        assert await usage.hold(alice.id, SKETCH.id, 1, 1) is None  # asked in the background
        for _ in range(100):
            await asyncio.sleep(0.01)
            found = await usage.hold(alice.id, SKETCH.id, 1, 1)
            if found is not None:
                break
        assert isinstance(found, IncludedHold)
        usage.settle(found, 1)
        await asyncio.to_thread(usage.close)

    asyncio.run(run())


def test_a_process_that_stalled_past_its_ttl_serves_nothing_from_its_lost_lease(
    engine: Engine,
) -> None:
    """A stalled process's lease expires and the other process takes all the included usage
    there is; the stalled process, waking with calls still free in its lease in memory, asks
    the database first and finds the period used up."""
    clock = _Clock()
    accounts, store = AccountStore(engine), IncludedStore(engine, clock=clock)
    alice = accounts.sign_in("alice", 1)
    store.grant(alice, Decimal("9.00"))
    store.subscribe(alice, _tier(20, None, None))

    def process(name: str) -> IncludedUsage:
        return IncludedUsage(
            IncludedStore(engine, clock=clock),
            name,
            headroom=4,
            idle_return=600.0,
            wall=lambda: clock.now.timestamp(),
            clock=lambda: clock.monotonic,
        )

    stalled, alive = process("stalled"), process("alive")

    async def run() -> int:
        first = await stalled.hold(alice.id, SKETCH.id, 1, 1)
        assert isinstance(first, IncludedHold)
        stalled.settle(first, 1)
        requests, _ = first.allowance.free()
        assert requests is not None
        assert requests > 0  # calls left in its lease in memory
        clock.now += timedelta(seconds=61)
        clock.monotonic += 61
        served = 0
        while isinstance(found := await alive.hold(alice.id, SKETCH.id, 1, 1), IncludedHold):
            alive.settle(found, 1)
            served += 1
        assert isinstance(found, Beyond)
        # Awake: no call is served from the lease the database took back.
        assert isinstance(await stalled.hold(alice.id, SKETCH.id, 1, 1), Beyond)
        await asyncio.to_thread(stalled.close)
        await asyncio.to_thread(alive.close)
        return served

    served = asyncio.run(run())
    assert served == 20 - 1 or served == 20  # the stalled call's use was written or lost
    (sub,) = store.subscriptions(alice)
    used, held = store.included_usage(sub.id)
    assert used.requests <= 20
    assert (held.requests, held.tokens) == (0, 0)
