"""Subscriptions charged from the balance, on SQLite and PostgreSQL: the first month at
subscribe time, each next when it starts, once however often renewals run, never beyond what
is available; another account's subscription is not found."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from formarket.accounts import AccountStore, open_database
from formarket.accounts.subscriptions import (
    AlreadySubscribed,
    InsufficientCredit,
    SubscriptionStore,
    Tier,
    next_period,
)
from formarket.errors import NotFoundError

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
HOBBY = Tier("lumen-labs/sketch-turbo", "Hobby", Decimal("9.00"), 500, None)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_month_is_a_calendar_month() -> None:
    assert next_period(T0) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert next_period(datetime(2026, 12, 15, tzinfo=UTC)) == datetime(2027, 1, 15, tzinfo=UTC)
    assert next_period(datetime(2028, 1, 31, tzinfo=UTC)) == datetime(2028, 2, 29, tzinfo=UTC)


def test_each_month_is_charged_once_and_an_unpaid_one_lapses(db_url: str) -> None:
    engine = open_database(db_url)
    clock = Clock()
    try:
        accounts, subs = AccountStore(engine), SubscriptionStore(engine, clock=clock)
        alice = accounts.sign_in("alice", 1)
        with pytest.raises(InsufficientCredit):
            subs.subscribe(alice, HOBBY)
        assert subs.subscriptions(alice) == []
        subs.grant(alice, Decimal("20.00"))
        made = subs.subscribe(alice, HOBBY)
        assert (made.periods, made.period_start, made.period_end) == (1, T0, next_period(T0))
        assert subs.balance(alice).balance == Decimal("11.00")
        with pytest.raises(AlreadySubscribed):
            subs.subscribe(alice, HOBBY)
        assert subs.renew_due() == {}  # nothing due yet
        clock.now = next_period(T0)
        assert subs.renew_due() == {made.id: "renewed"}
        assert subs.renew_due() == {}  # run again: charged once
        assert subs.balance(alice).balance == Decimal("2.00")
        assert subs.charged(f"sub-{made.id}-2") == Decimal("9.00")
        clock.now = next_period(next_period(T0))
        assert subs.renew_due() == {made.id: "lapsed"}  # 2.00 does not cover 9.00
        [lapsed] = subs.subscriptions(alice)
        assert (lapsed.state, lapsed.periods) == ("lapsed", 2)
        assert subs.balance(alice).balance == Decimal("2.00")  # never below zero
        # Lapsed: a new subscription may be made.
        subs.grant(alice, Decimal("7.00"))
        again = subs.subscribe(alice, HOBBY)
        assert subs.cancel(alice, again.id).state == "cancelled"
        clock.now = next_period(clock.now) + timedelta(days=1)
        assert subs.renew_due() == {}  # cancelled: no renewal
    finally:
        engine.dispose()


def test_another_accounts_subscription_is_not_found(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        accounts, subs = AccountStore(engine), SubscriptionStore(engine)
        alice, mallory = accounts.sign_in("alice", 1), accounts.sign_in("mallory", 2)
        subs.grant(alice, Decimal("10.00"))
        made = subs.subscribe(alice, HOBBY)
        with pytest.raises(NotFoundError):
            subs.cancel(mallory, made.id)
        with pytest.raises(NotFoundError):
            subs.cancel(mallory, "sub_" + "0" * 24)
        assert subs.subscriptions(mallory) == []
        assert subs.subscriptions(alice)[0].state == "active"
    finally:
        engine.dispose()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["renew", "renew", "grant", "advance", "cancel", "subscribe"]),
            st.integers(1, 40),
        ),
        max_size=30,
    )
)
def test_renewals_retried_never_charge_a_month_twice(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    """Renewals run any number of times among top-ups, cancels and time passing: what was
    charged is exactly the months paid, and the balance never goes below zero."""
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('subs') / 'a.sqlite'}")
    clock = Clock()
    try:
        accounts, subs = AccountStore(engine), SubscriptionStore(engine, clock=clock)
        alice = accounts.sign_in("alice", 1)
        subs.grant(alice, Decimal("10.00"))
        for action, n in steps:
            if action == "renew":
                subs.renew_due()
            elif action == "grant":
                subs.grant(alice, Decimal(n))
            elif action == "advance":
                clock.now += timedelta(days=n)
            elif action == "cancel":
                for s in subs.subscriptions(alice):
                    subs.cancel(alice, s.id)
            else:
                with contextlib.suppress(InsufficientCredit, AlreadySubscribed):
                    subs.subscribe(alice, HOBBY)
            view = subs.balance(alice)
            assert view.balance >= 0
            months = sum(s.periods for s in subs.subscriptions(alice))
            assert view.spent == months * HOBBY.price
            with engine.connect() as conn:
                charged = conn.execute(text("SELECT COUNT(*) FROM charges")).scalar_one()
            assert charged == months
            assert view.credited == view.available + view.spent
    finally:
        engine.dispose()
