"""Charges drawn on a balance for instance time, on SQLite and PostgreSQL: each charge id is
taken once however often it is retried, a charge alone takes the balance below zero, and the
balance is marked at zero from when the farm finds it so until a top-up lifts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from formarket.accounts import AccountStore, open_database
from formarket.accounts.credit import CreditStore
from formarket.accounts.pseudonym import Pseudonyms

TTL = timedelta(seconds=60)
ZERO = Decimal(0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_charge_is_taken_once_and_may_go_below_zero(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        credit.grant(alice, Decimal("1.00"))
        assert credit.charge(alice.id, "ih-d1-0", Decimal("0.50"), "instance") == Decimal("0.5")
        assert credit.charge(alice.id, "ih-d1-0", Decimal("0.50"), "instance") == 0
        # Asked again for more (the slice reported again, longer): the difference only.
        assert credit.charge(alice.id, "ih-d1-0", Decimal("0.75"), "instance") == Decimal("0.25")
        assert credit.charge(alice.id, "ih-d1-0", Decimal("0.60"), "instance") == 0
        assert credit.charge(alice.id, "ih-d1-3600", Decimal("0.75"), "instance") > 0
        view = credit.balance(alice)
        assert view.balance == Decimal("-0.50")
        assert view.spent == Decimal("1.50")
        assert view.credited == view.available + view.spent
        assert credit.charged("ih-d1-0") == Decimal("0.75")
        assert credit.charged("ih-nothing") is None
        # Below zero a gateway leases nothing.
        assert credit.take(
            alice.id, "gw", None, ZERO, short=Decimal("0.01"), more=Decimal(1), ttl=TTL
        ) == (None, ZERO)
    finally:
        engine.dispose()


def test_a_charge_of_another_account_id_is_not_taken_again(db_url: str) -> None:
    """The id belongs to the first account charged: the same id never charges a second one."""
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice, bob = store.sign_in("alice", 1), store.sign_in("bob", 2)
        assert credit.charge(alice.id, "ih-x-0", Decimal("0.10"), "instance") > 0
        assert credit.charge(bob.id, "ih-x-0", Decimal("0.20"), "instance") == 0
        assert credit.balance(bob).spent == ZERO
    finally:
        engine.dispose()


@pytest.mark.parametrize("amount", ["-0.01", "NaN", "Infinity"])
def test_a_charge_is_never_negative_or_not_a_number(db_url: str, amount: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        alice = store.sign_in("alice", 1)
        with pytest.raises((ValueError, ArithmeticError)):
            credit.charge(alice.id, "c", Decimal(amount), "instance")
        with pytest.raises(ValueError):
            credit.charge(alice.id, "", Decimal(1), "instance")
        with pytest.raises(ValueError):
            credit.charge(alice.id, "x" * 256, Decimal(1), "instance")
        assert credit.balance(alice).spent == ZERO
    finally:
        engine.dispose()


def test_the_zero_mark_is_set_when_found_and_cleared_by_a_top_up(db_url: str) -> None:
    engine = open_database(db_url)
    clock = Clock()
    try:
        store, credit = AccountStore(engine), CreditStore(engine, clock=clock)
        alice = store.sign_in("alice", 1)
        # Reading never marks; the farm's look does.
        assert credit.standing(alice.id).zero_since is None
        found = credit.standing(alice.id, mark=True)
        assert (found.balance, found.zero_since) == (ZERO, clock.now)
        first = clock.now
        clock.now += timedelta(hours=3)
        assert credit.standing(alice.id, mark=True).zero_since == first  # kept, not moved
        assert credit.standing(alice.id).zero_since == first
        credit.grant(alice, Decimal("0.50"))
        assert credit.standing(alice.id) == credit.standing(alice.id, mark=True)
        assert credit.standing(alice.id).zero_since is None
        credit.charge(alice.id, "ih-a", Decimal("0.50"), "instance")
        clock.now += timedelta(hours=1)
        assert credit.standing(alice.id, mark=True).zero_since == clock.now
        # A top-up that leaves it at or below zero keeps the mark.
        credit.charge(alice.id, "ih-b", Decimal("1.00"), "instance")
        credit.grant(alice, Decimal("0.50"))
        assert credit.standing(alice.id).zero_since == clock.now
        credit.grant(alice, Decimal("0.51"))
        assert credit.standing(alice.id).zero_since is None
    finally:
        engine.dispose()


def test_accounts_are_found_by_their_names_in_git(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        names = Pseudonyms(b"k" * 32)
        alice, bob = store.sign_in("Alice", 1), store.sign_in("bob", 2)
        found = credit.accounts_named(
            [names.of("alice"), "bob", names.of("carol"), "acct_" + "a" * 26], names
        )
        assert found == {names.of("alice"): alice.id, "bob": bob.id}
        assert credit.accounts_named([], names) == {}
    finally:
        engine.dispose()


steps = st.lists(
    st.tuples(
        st.sampled_from(["charge", "retry", "grant", "take", "give_back", "expire"]),
        st.integers(0, 5),  # which charge id
        st.decimals(Decimal("0.01"), Decimal("0.80"), places=2),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_charges_retried_in_any_order_are_taken_once(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, Decimal]]
) -> None:
    """Charges retried among top-ups, leases and expiries: each id comes to the most it was
    asked, never more; every cent credited is available, spent or leased; and the balance
    is never below minus the instance time charged (nothing else takes it below zero)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('charges') / 'a.sqlite'}"
    engine = open_database(url)
    clock = Clock()
    try:
        store, credit = AccountStore(engine), CreditStore(engine, clock=clock)
        alice = store.sign_in("alice", 1)
        most: dict[str, Decimal] = {}
        lease = None
        for action, which, amount in steps:
            charge_id = f"ih-dep-{which}"
            if action in ("charge", "retry"):
                taken = credit.charge(alice.id, charge_id, amount, "instance")
                assert taken == max(ZERO, amount - most.get(charge_id, ZERO))
                most[charge_id] = max(amount, most.get(charge_id, ZERO))
            elif action == "grant":
                credit.grant(alice, amount)
            elif action == "take":
                lease, _ = credit.take(
                    alice.id, "gw", lease, ZERO, short=amount / 4, more=amount, ttl=TTL
                )
            elif action == "give_back" and lease is not None:
                credit.give_back(alice.id, lease, lease.amount / 2)
                lease = None
            elif action == "expire":
                clock.now += timedelta(seconds=61)
            view = credit.balance(alice)
            charged = sum(most.values(), ZERO)
            assert view.balance >= -charged
            with engine.connect() as conn:
                leased = sum(
                    (Decimal(str(a)) for (a,) in conn.execute(text("SELECT amount FROM leases"))),
                    ZERO,
                )
            assert view.credited == view.available + view.spent + leased
            for cid, asked in most.items():
                assert credit.charged(cid) == asked
    finally:
        engine.dispose()
