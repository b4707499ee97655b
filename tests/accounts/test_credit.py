"""Prepaid credit in the accounts database, on SQLite and PostgreSQL: leases never take more
than a balance has, what they spend is counted once when they return, an expired lease comes
back, and a top-up is credited once whatever happens to its webhook."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from formarket.accounts import AccountStore, open_database
from formarket.accounts.credit import CreditStore, check_amount
from formarket.errors import UsageError
from formarket.gateway.credit import Credit, Hold, Short

TTL = timedelta(seconds=60)
ZERO = Decimal(0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _conserved(credit: CreditStore, store: AccountStore, login: str) -> None:
    """Every cent credited is available, spent, or held by a lease: never below zero."""
    account = store.account(login)
    assert account is not None
    view = credit.balance(account)
    assert view.available >= 0
    with credit.engine.connect() as conn:
        leased = sum(
            (Decimal(str(a)) for (a,) in conn.execute(text("SELECT amount FROM leases"))), ZERO
        )
    assert view.credited == view.available + view.spent + leased


def test_a_lease_takes_no_more_than_the_balance_and_returns_the_rest(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        assert credit.take(
            alice.id, "gw", None, ZERO, short=Decimal(1), more=Decimal(1), ttl=TTL
        ) == (None, ZERO)
        credit.grant(alice, Decimal("5.00"))
        lease, added = credit.take(
            alice.id, "gw", None, ZERO, short=Decimal("0.5"), more=Decimal(100), ttl=TTL
        )
        assert lease is not None
        # Half of what is there: the rest stays for the account's other gateways.
        assert added == Decimal("2.50") == lease.amount
        assert credit.balance(alice).available == Decimal("2.50")
        # Short of more than half: it takes what it needs, and no more than there is.
        lease, added = credit.take(
            alice.id, "gw", lease, ZERO, short=Decimal("2.50"), more=Decimal(100), ttl=TTL
        )
        assert lease is not None
        assert added == Decimal("2.50")
        assert lease.amount == Decimal("5.00")
        # Nothing left: a second holder is refused and nothing changes.
        assert credit.take(
            alice.id, "gw2", None, ZERO, short=Decimal("0.01"), more=Decimal(1), ttl=TTL
        ) == (None, ZERO)
        assert credit.give_back(alice.id, lease, Decimal("1.25"))
        view = credit.balance(alice)
        assert (view.available, view.spent, view.balance) == (
            Decimal("3.75"),
            Decimal("1.25"),
            Decimal("3.75"),
        )
        assert not credit.give_back(alice.id, lease, Decimal("1.25"))  # once only
        _conserved(credit, store, "alice")
    finally:
        engine.dispose()


def test_an_expired_lease_returns_less_what_it_wrote_as_spent(db_url: str) -> None:
    clock = Clock()
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine, clock=clock)
        alice = store.sign_in("alice", 1)
        credit.grant(alice, Decimal("2.00"))
        lease, _ = credit.take(
            alice.id, "killed", None, ZERO, short=Decimal(1), more=Decimal(2), ttl=TTL
        )
        assert lease is not None
        assert credit.renew(lease, Decimal("0.40"), TTL)
        clock.now += TTL * 2  # the holder was killed: it renews no more
        other, added = credit.take(
            alice.id, "alive", None, ZERO, short=Decimal("0.1"), more=Decimal("0.1"), ttl=TTL
        )
        assert other is not None
        assert added == Decimal("0.1")
        view = credit.balance(alice)
        assert view.spent == Decimal("0.40")
        assert view.available == Decimal("1.50")
        assert not credit.renew(lease, Decimal("0.50"), TTL)  # its holder learns it is gone
        _conserved(credit, store, "alice")
    finally:
        engine.dispose()


def test_a_process_that_stalled_past_its_ttl_is_charged_what_its_open_calls_spent(
    db_url: str,
) -> None:
    """A stalled process's lease expires and the other process leases and spends it all; the
    stalled process's open call was served all the same: it is charged, below zero, once."""
    clock = Clock()
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine, clock=clock)
        alice = store.sign_in("alice", 1)
        credit.grant(alice, Decimal("1.00"))
        seconds = lambda: clock.now.timestamp()  # noqa: E731
        stalled = Credit(credit, "stalled", idle_return=60.0, clock=seconds)
        alive = Credit(credit, "alive", idle_return=60.0, clock=seconds)

        spent_alive = ZERO

        async def run() -> None:
            nonlocal spent_alive
            held = await stalled.hold(alice.id, Decimal("0.50"), Decimal("0.50"))
            assert isinstance(held, Hold)
            early = await stalled.hold(alice.id, Decimal("0.10"), Decimal("0.10"))
            assert isinstance(early, Hold)
            stalled.settle(early, Decimal("0.10"))  # spent, not yet written
            clock.now += timedelta(seconds=61)
            # The other process sweeps the expired lease and spends all there is.
            cent, bit = Decimal("0.01"), Decimal("0.05")
            while isinstance(taken := await alive.hold(alice.id, cent, bit), Hold):
                spent_alive += alive.settle(taken, taken.amount)
            # The stalled process wakes: its lease is gone, and a new hold finds no credit.
            assert isinstance(await stalled.hold(alice.id, Decimal("0.01"), Decimal("0.01")), Short)
            stalled.settle(held, Decimal("0.30"))
            await stalled.maintain()
            await stalled.maintain()  # charged once, whatever the rounds
            stalled.close()
            alive.close()

        asyncio.run(run())
        view = credit.balance(alice)
        assert spent_alive > Decimal("0.60")  # it had the stalled call's held credit too
        assert view.held == 0
        assert view.spent == Decimal("0.40") + spent_alive
        assert view.available == Decimal("1.00") - view.spent
        assert Decimal("-0.40") <= view.available < 0
    finally:
        engine.dispose()


def test_a_topup_is_credited_once_and_only_as_opened(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        credit.open_topup(alice, "cs_1", Decimal("10.00"))
        assert not credit.credit_topup("cs_1", Decimal("1000.00"), "USD")  # not what was opened
        assert not credit.credit_topup("cs_1", Decimal("10.00"), "EUR")
        assert not credit.credit_topup("cs_unknown", Decimal("10.00"), "USD")
        assert credit.balance(alice).balance == 0
        results = []
        threads = [
            threading.Thread(
                target=lambda: results.append(credit.credit_topup("cs_1", Decimal("10.00"), "usd"))
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 7 + [True]
        assert credit.balance(alice).balance == Decimal("10.00")
        credit.open_topup(alice, "cs_2", Decimal("3.00"))
        assert credit.expire_topup("cs_2")
        assert not credit.credit_topup("cs_2", Decimal("3.00"), "USD")  # expired stays expired
        assert [t.state for t in credit.topups(alice)] == ["credited", "expired"]
        _conserved(credit, store, "alice")
    finally:
        engine.dispose()


@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "10000.01", "NaN", "Infinity"])
def test_a_topup_amount_is_whole_cents_within_bounds(amount: str) -> None:
    with pytest.raises(UsageError):
        check_amount(Decimal(amount))


# --- many holders on one balance -------------------------------------------------------


holders = st.lists(
    st.tuples(
        st.integers(0, 2),  # which holder (a gateway process)
        st.sampled_from(["hold", "settle", "maintain", "expire"]),
        st.decimals(Decimal("0.000001"), Decimal("0.5"), places=6),
    ),
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=holders, credited=st.decimals(Decimal("0.01"), Decimal("3"), places=2))
def test_holders_never_spend_more_than_was_credited(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[int, str, Decimal]],
    credited: Decimal,
) -> None:
    """Any interleaving of holds, settles, renewals and stalls past the ttl across three
    processes: what was spent never exceeds what was credited, but for what calls open in a
    stalled process spent (served all the same, and charged even below zero); and in the end
    the database has every cent the processes spent, and every other cent is available."""
    url = f"sqlite:///{tmp_path_factory.mktemp('credit') / 'a.sqlite'}"
    engine = open_database(url)
    clock = Clock()
    try:
        store, credit = AccountStore(engine), CreditStore(engine, clock=clock)
        alice = store.sign_in("alice", 1)
        credit.grant(alice, credited)
        procs = [
            Credit(
                credit,
                f"gw/{i}",
                headroom=4,
                idle_return=0.0,
                clock=lambda: clock.now.timestamp(),
            )
            for i in range(3)
        ]
        open_holds: list[list[tuple[Hold, Decimal]]] = [[], [], []]
        charged = ZERO
        stalled = ZERO  # held by open calls when the processes stalled

        async def run() -> None:
            nonlocal charged, stalled
            for which, action, amount in steps:
                proc = procs[which]
                if action == "hold":
                    held = await proc.hold(alice.id, amount / 2, amount)
                    if not isinstance(held, Short):
                        assert amount / 2 <= held.amount <= amount
                        open_holds[which].append((held, amount))
                elif action == "settle" and open_holds[which]:
                    held, _ = open_holds[which].pop(0)
                    cost = held.amount * Decimal("0.7")
                    charged += proc.settle(held, cost)
                elif action == "maintain":
                    await proc.maintain()
                elif action == "expire":
                    stalled += sum(held.amount for holds in open_holds for held, _ in holds)
                    clock.now += timedelta(seconds=61)
                view = credit.balance(alice)
                assert view.available >= -stalled
                assert charged <= credited + stalled
            for which, proc in enumerate(procs):
                for held, _ in open_holds[which]:
                    proc.settle(held, ZERO)
                proc.close()

        asyncio.run(run())
        view = credit.balance(alice)
        assert view.credited == credited
        assert view.held == 0  # every lease returned
        assert view.spent == charged
        assert view.available == credited - charged
    finally:
        engine.dispose()


def _spend(url: str, account_id: int, seed: int, calls: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One gateway process's worth of calls on one balance: 16 at a time, each holding a
    random bound and spending part of it."""
    engine = open_database(url)
    proc = Credit(CreditStore(engine), f"worker/{seed}", idle_return=0.05)
    rng = random.Random(seed)
    charged = ZERO

    async def call() -> None:
        nonlocal charged
        want = Decimal(rng.randint(1, 5000)) / Decimal(100_000)
        held = await proc.hold(account_id, want / 4, want)
        if isinstance(held, Short):
            return
        await asyncio.sleep(rng.random() / 1000)
        cost = held.amount * Decimal(rng.randint(0, 100)) / 100
        charged += proc.settle(held, cost)

    async def run() -> None:
        for start in range(0, calls, 16):
            await asyncio.gather(*(call() for _ in range(min(16, calls - start))))
            if rng.random() < 0.2:
                await proc.maintain()
        await asyncio.to_thread(proc.close)

    asyncio.run(run())
    engine.dispose()
    out.put(str(charged))


def test_gateway_processes_on_one_balance_never_overspend_it(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        credited = Decimal("1.50")
        credit.grant(alice, credited)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_spend, args=(db_url, alice.id, seed, 400, out)) for seed in range(4)
        ]
        for worker in workers:
            worker.start()
        charged = [Decimal(out.get(timeout=120)) for _ in workers]
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
        view = credit.balance(alice)
        # The calls asked for far more than 1.50 in all: the balance ran out, and stopped them.
        assert sum(charged) <= credited
        assert view.available >= 0
        assert view.spent == sum(charged)
        assert view.available + view.spent == credited
        assert view.available < Decimal("0.2")
    finally:
        engine.dispose()


def test_a_database_of_the_revision_before_is_upgraded_with_its_accounts(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    import formarket.accounts.database as database

    url = db_url.replace("postgresql://", "postgresql+psycopg://")
    config = Config()
    config.set_main_option("script_location", str(database._MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(
            text("INSERT INTO accounts (id, login, created_at) VALUES (7, 'old', :at)"),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    engine.dispose()
    upgraded = open_database(db_url)
    try:
        store, credit = AccountStore(upgraded), CreditStore(upgraded)
        old = store.account("old")
        assert old is not None
        assert credit.balance(old).balance == 0
        credit.grant(old, Decimal("0.10"))
        assert credit.balance(old).balance == Decimal("0.10")
    finally:
        upgraded.dispose()


def test_a_top_up_its_holder_never_heard_of_returns_with_the_lease(db_url: str) -> None:
    """A lease's top-up whose answer was lost (its task cancelled after the transaction
    committed) is given back with the lease all the same: the row's amount counts."""
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        credit.grant(alice, Decimal("1.00"))
        stale, _ = credit.take(
            alice.id, "gw", None, ZERO, short=Decimal("0.1"), more=Decimal("0.1"), ttl=TTL
        )
        assert stale is not None
        credit.take(alice.id, "gw", stale, ZERO, short=ZERO, more=Decimal("0.3"), ttl=TTL)
        assert credit.give_back(alice.id, stale, Decimal("0.05"))
        view = credit.balance(alice)
        assert (view.available, view.spent) == (Decimal("0.95"), Decimal("0.05"))
        _conserved(credit, store, "alice")
    finally:
        engine.dispose()
