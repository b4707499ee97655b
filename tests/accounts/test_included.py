"""Subscriptions' included usage leased to gateway processes, on SQLite and PostgreSQL: leases
never hand out more than the period includes, what a returned lease used counts and the rest
is there for others, a lease of an ended period counts no more, a due subscription is renewed
by the take that finds it so; and, under any interleaving of takes, renewals, returns and
crashes, calls never use more than the tier includes beyond what crashed holders had not
written (hypothesis)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from formarket.accounts import AccountStore, AccountView, open_database
from formarket.accounts.included import IncludedStore, Measure, Slice
from formarket.accounts.subscriptions import Tier, next_period

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=60)
ALL = Measure(100, 10**6)  # more than any tier here includes
LISTING = "lumen-labs/sketch-turbo"
TIER = Tier(LISTING, "Hobby", Decimal("9.00"), 10, 1000, Decimal("0.05"))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


def _subscriber(
    engine: Engine, clock: Clock, tier: Tier = TIER
) -> tuple[IncludedStore, AccountView]:
    accounts, store = AccountStore(engine), IncludedStore(engine, clock=clock)
    who = accounts.sign_in(f"user{secrets.token_hex(4)}", secrets.randbelow(10**9))
    store.grant(who, Decimal("100.00"))
    store.subscribe(who, tier)
    return store, who


def test_leases_hand_out_at_most_what_the_period_includes(engine: Engine) -> None:
    clock = Clock()
    store, who = _subscriber(engine, clock)
    account = who.id
    terms, a = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 10), more=ALL, ttl=TTL
    )
    assert terms is not None
    assert (terms.requests, terms.tokens, terms.overage) == (10, 1000, Decimal("0.05"))
    assert a is not None
    # At most half of what is left beyond what is short: the other processes find some too.
    assert (a.requests, a.tokens) == (5, 500)
    _, b = store.take_included(
        account, LISTING, "b", None, Measure(), short=Measure(1, 10), more=ALL, ttl=TTL
    )
    assert b is not None
    assert (b.requests, b.tokens) == (2, 250)
    # Short of more than is left: nothing is added.
    _, c = store.take_included(
        account, LISTING, "c", None, Measure(), short=Measure(4, 1), more=Measure(4, 1), ttl=TTL
    )
    assert c is None
    # What a returned lease used counts; the rest is there again.
    assert store.give_back_included(account, a, Measure(3, 400))
    used, held = store.included_usage(terms.subscription)
    assert (used, held) == (Measure(3, 400), Measure(2, 250))
    _, c = store.take_included(
        account, LISTING, "c", None, Measure(), short=Measure(5, 350), more=Measure(5, 350), ttl=TTL
    )
    assert c is not None
    assert (c.requests, c.tokens) == (5, 350)
    used, held = store.included_usage(terms.subscription)
    assert used.requests + held.requests == 10
    assert used.tokens + held.tokens == 1000


def test_a_lease_grows_and_writes_what_it_used(engine: Engine) -> None:
    clock = Clock()
    store, who = _subscriber(engine, clock)
    account = who.id
    _, a = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 1), more=Measure(1, 100), ttl=TTL
    )
    assert a is not None
    _, grown = store.take_included(
        account, LISTING, "a", a, Measure(1, 80), short=Measure(1, 1), more=Measure(2, 100), ttl=TTL
    )
    assert grown is not None
    assert grown.id == a.id
    assert (grown.requests, grown.tokens) > (a.requests, a.tokens)
    # A holder killed outright: its lease expires and what it had written as used counts.
    clock.now += TTL * 2
    _, other = store.take_included(
        account, LISTING, "b", None, Measure(), short=Measure(1, 1), more=Measure(1, 1), ttl=TTL
    )
    assert other is not None
    terms, _ = store.take_included(
        account, LISTING, "b", other, Measure(), short=Measure(), more=Measure(), ttl=TTL
    )
    assert terms is not None
    used, _ = store.included_usage(terms.subscription)
    assert used == Measure(1, 80)
    assert not store.give_back_included(account, grown, Measure(2, 90))  # gone already


def test_a_new_period_is_whole_again_and_old_leases_count_no_more(engine: Engine) -> None:
    clock = Clock()
    store, who = _subscriber(engine, clock)
    account = who.id
    terms, a = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(5, 1), more=Measure(5, 1), ttl=TTL
    )
    assert terms is not None
    assert a is not None
    assert store.give_back_included(account, a, Measure(5, 900))
    # The month ends: the take that finds it so renews the subscription (charging the next
    # month once) and leases from the new period, whole again.
    clock.now = next_period(T0) + timedelta(minutes=1)
    renewed, b = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 1), more=ALL, ttl=TTL
    )
    assert renewed is not None
    assert b is not None
    assert (renewed.subscription, renewed.period) == (terms.subscription, 2)
    assert (b.requests, b.tokens) == (5, 500)
    assert store.renew_due() == {}  # charged once: the farm finds nothing due
    assert store.charged(f"sub-{terms.subscription}-2") == TIER.price
    # A lease of the old period given back late counts no more.
    old = Slice("x" * 32, terms.subscription, 1, 5, 500)
    assert not store.give_back_included(account, old, Measure(5, 500))
    used, _ = store.included_usage(terms.subscription)
    assert used == Measure()


def test_without_a_subscription_there_are_no_terms(engine: Engine) -> None:
    clock = Clock()
    store, who = _subscriber(engine, clock)
    account = who.id
    assert store.take_included(
        account, "someone/else", "a", None, Measure(), short=Measure(1, 1), more=Measure(), ttl=TTL
    ) == (None, None)
    # A cancelled subscription covers the month paid for, and no longer.
    (sub,) = store.subscriptions(who)
    store.cancel(who, sub.id)
    terms, _ = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 1), more=Measure(), ttl=TTL
    )
    assert terms is not None
    clock.now = next_period(T0)
    assert store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 1), more=Measure(), ttl=TTL
    ) == (None, None)


def test_a_tier_that_limits_nothing_needs_no_lease(engine: Engine) -> None:
    clock = Clock()
    store, who = _subscriber(engine, clock, Tier(LISTING, "Pro", Decimal(20), None, None))
    account = who.id
    terms, lease = store.take_included(
        account, LISTING, "a", None, Measure(), short=Measure(1, 1), more=Measure(9, 9), ttl=TTL
    )
    assert terms is not None
    assert not terms.limited
    assert lease is None


# --- any interleaving -------------------------------------------------------------------


@dataclass
class Holder:
    lease: Slice | None = None
    used: Measure = field(default_factory=Measure)
    written: Measure = field(default_factory=Measure)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["take", "use", "renew", "give_back", "crash", "expire"]),
        st.integers(0, 2),
        st.integers(0, 6),
        st.integers(0, 400),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_under_any_interleaving_calls_never_use_more_than_included(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int, int]]
) -> None:
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('inc') / 'a.sqlite'}")
    try:
        clock = Clock()
        store, who = _subscriber(engine, clock)
        account = who.id
        holders = [Holder() for _ in range(3)]
        consumed = Measure()  # what calls used, whoever served them
        unwritten = Measure()  # what crashed holders used and never wrote
        for op, n, requests, tokens in ops:
            h = holders[n]
            if op == "take":
                _, lease = store.take_included(
                    account,
                    LISTING,
                    f"h{n}",
                    h.lease,
                    h.used,
                    short=Measure(min(requests, 1), tokens // 4),
                    more=Measure(requests, tokens),
                    ttl=TTL,
                )
                if lease is None or h.lease is None or lease.id != h.lease.id:
                    h.used = h.written = Measure()
                h.lease = lease
            elif op == "use" and h.lease is not None:
                r = min(requests, h.lease.requests - h.used.requests)
                t = min(tokens, h.lease.tokens - h.used.tokens)
                h.used = Measure(h.used.requests + r, h.used.tokens + t)
                consumed = Measure(consumed.requests + r, consumed.tokens + t)
            elif op == "renew" and h.lease is not None:
                if store.renew_included(h.lease, h.used, TTL):
                    h.written = h.used
                else:
                    h.lease, h.used, h.written = None, Measure(), Measure()
            elif op == "give_back" and h.lease is not None:
                store.give_back_included(account, h.lease, h.used)
                h.lease, h.used, h.written = None, Measure(), Measure()
            elif op == "crash" and h.lease is not None:
                unwritten = Measure(
                    unwritten.requests + h.used.requests - h.written.requests,
                    unwritten.tokens + h.used.tokens - h.written.tokens,
                )
                h.lease, h.used, h.written = None, Measure(), Measure()
            elif op == "expire":
                # Time passes: the holders alive renew their leases (a gateway does every
                # second), so only the crashed ones' expire.
                clock.now += TTL + timedelta(seconds=1)
                for alive in holders:
                    if alive.lease is not None:
                        assert store.renew_included(alive.lease, alive.used, TTL)
                        alive.written = alive.used
            assert TIER.included_requests is not None
            assert TIER.included_tokens is not None
            assert consumed.requests <= TIER.included_requests + unwritten.requests
            assert consumed.tokens <= TIER.included_tokens + unwritten.tokens
            # And in the database: what returned leases used and what open ones hold.
            (sub,) = store.subscriptions(who)
            used, held = store.included_usage(sub.id)
            assert used.requests + held.requests <= TIER.included_requests
            assert used.tokens + held.tokens <= TIER.included_tokens
    finally:
        engine.dispose()
