"""Instance time drawn on the balance, and an account out of credit told, then stopped once
the grace of the terms has passed, on SQLite and PostgreSQL, with a fake clock: a retried
metering cycle never charges twice, a top-up in time cancels the stop, and the stop's commit
names the account by its pseudonym alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.accounts import AccountStore, open_database
from formarket.accounts.credit import CreditStore
from formarket.accounts.pseudonym import Pseudonyms
from formarket.farm import status
from formarket.farm.billing import (
    instance_charges,
    pending_charges,
    record_charges,
    settle_charges,
)
from formarket.farm.credit_cycle import charge_and_stop, hour_prices_of
from formarket.farm.desired import read_deployments, submit
from formarket.farm.metering import meter_running
from formarket.farm.out_of_credit import DEFAULT_GRACE, grace_of
from formarket.farm.settings import FarmSettings
from formarket.github import GitHub
from formarket.market.governance import bot_identity
from formarket.market.refs import find_tip
from formarket.schemas.deployment import Deployment
from formarket.standins.github import StandIn
from formarket.usage.events import Served, instance_hours
from tests.accounts.databases import db_url, pg_url
from tests.farm.factories import deployment

__all__ = ["db_url", "pg_url"]

PRICED = "northwind-ai/northwind-coder-32b"  # 4.80 an hour in the starter registry
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
REPO = "acme/marketplace"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _of(dep: Deployment, account: str, issue: int | None = None) -> Deployment:
    update: dict[str, object] = {"account": account, "requester": account}
    if issue is not None:
        update["origin"] = dep.origin.model_copy(update={"kind": "issue", "issue": issue})
    return dep.model_copy(update=update)


class Farm:
    """A marketplace with two running deployments of one account (a priced one and a free
    one), the accounts database the farm shares, and that account in it."""

    def __init__(self, marketplace: Repo, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FORMARKET_DATABASE_URL", url)
        root = Path(marketplace.path)
        self.settings = FarmSettings(repo=root, state=root / "farm-state")
        self.clock = Clock()
        self.engine = open_database(url)
        self.store = AccountStore(self.engine)
        self.credit = CreditStore(self.engine, clock=self.clock)
        self.ada = self.store.sign_in("ada", 1)
        self.names = status.farm_pseudonyms(self.settings)
        self.account = self.names.of("ada")
        self.repo = marketplace
        priced = deployment("dep-000000000001", listing=PRICED, version="2.0.0")
        free = deployment("dep-000000000002")
        self.deployments = [_of(priced, self.account, issue=1), _of(free, self.account)]
        submit(marketplace, "main", self.deployments, "Deploy", bot_identity(marketplace, "main"))
        self.prices = hour_prices_of(self.settings)

    def desired(self) -> dict[str, Deployment]:
        return read_deployments(self.repo, "main", problems=[])

    def meter(self, hours: int) -> int:
        """The meter's cycle for the priced deployment, `hours` after T0, with its charges."""
        d = self.deployments[0]
        served = Served(d.id, d.account, None, (d.listing.id, d.listing.version))
        return meter_running(
            self.settings.state / "meter.json",
            self.settings.state / "spool",
            "farm/test",
            {d.id: served},
            T0 + timedelta(hours=hours),
            started={d.id: T0},
            bill=lambda events: record_charges(
                self.settings.state, instance_charges(events, self.prices)
            ),
        )

    def cycle(self, github: GitHub | None = None):  # type: ignore[no-untyped-def]
        return charge_and_stop(
            self.settings,
            self.desired(),
            self.prices,
            self.clock,
            (lambda: github) if github is not None else None,
        )


@pytest.fixture
def farm(marketplace: Repo, db_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    made = Farm(marketplace, db_url, monkeypatch)
    try:
        yield made
    finally:
        made.engine.dispose()


def test_instance_time_is_charged_once_and_an_account_at_zero_stops_after_the_grace(
    farm: Farm,
) -> None:
    farm.credit.grant(farm.ada, Decimal("5.00"))
    assert farm.meter(2) == 2  # two hour-events
    done = farm.cycle()
    assert done.charged == 2
    view = farm.credit.balance(farm.ada)
    assert view.balance == Decimal("5.00") - 2 * Decimal("4.80")
    first = farm.credit.standing(farm.ada.id)
    assert first.zero_since == T0
    assert done.at_zero == (farm.account,)
    # The same interval reported again (a crash before the clock was saved): no new charge.
    farm.settings.state.joinpath("meter.json").unlink()
    assert farm.meter(2) == 2
    assert farm.cycle().charged == 0
    assert farm.credit.balance(farm.ada).balance == view.balance
    # Within the grace nothing stops.
    farm.clock.now = T0 + DEFAULT_GRACE - timedelta(seconds=1)
    assert farm.cycle().stopped == ()
    assert all(d.state == "running" for d in farm.desired().values())
    # Past it, the priced deployment stops; the free one runs on.
    farm.clock.now = T0 + DEFAULT_GRACE
    assert farm.cycle().stopped == ("dep-000000000001",)
    after = farm.desired()
    assert after["dep-000000000001"].state == "stopped"
    assert after["dep-000000000002"].state == "running"
    tip = find_tip(farm.repo, "main")
    assert tip is not None
    message = farm.repo[tip].message.decode()  # type: ignore[attr-defined]
    assert farm.account in message
    assert "out of credit" in message
    assert "ada" not in message.replace(farm.account, "")
    # Nothing priced runs any more: the next cycle commits nothing.
    assert farm.cycle().stopped == ()
    assert find_tip(farm.repo, "main") == tip


def test_a_top_up_within_the_grace_cancels_the_stop(farm: Farm) -> None:
    farm.meter(1)
    farm.cycle()
    assert farm.credit.standing(farm.ada.id).zero_since == T0
    farm.clock.now = T0 + timedelta(hours=20)
    farm.credit.grant(farm.ada, Decimal("20.00"))
    assert farm.credit.standing(farm.ada.id).zero_since is None
    farm.clock.now = T0 + DEFAULT_GRACE + timedelta(hours=1)
    done = farm.cycle()
    assert done.stopped == ()
    assert done.at_zero == ()
    assert farm.desired()["dep-000000000001"].state == "running"


def test_an_issue_is_told_once_before_its_deployment_stops(farm: Farm) -> None:
    with StandIn({"t": "formarket-bot"}) as github:
        farm.settings = FarmSettings(
            repo=farm.settings.repo, state=farm.settings.state, github_repo=REPO
        )
        assert github.open_issue(REPO, "dana", "Deploy", "body") == 1
        farm.meter(1)
        assert farm.cycle(GitHub(github.url, "t")).told == (1,)
        assert farm.cycle(GitHub(github.url, "t")).told == ()
        [comment] = github.comments(REPO, 1)
        assert "Out of credit" in comment["body"]
        assert "2026-12-02 10:00 UTC" in comment["body"]  # when it stops
        assert "dep-000000000001" in comment["body"]


def test_the_grace_is_the_terms(marketplace: Repo) -> None:
    assert grace_of(None) == timedelta(hours=24)
    assert grace_of(b"version: 1\n") == DEFAULT_GRACE  # terms that do not read
    raw = (Path(__file__).parents[2] / "royalties" / "policy.yaml").read_bytes()
    assert grace_of(raw) == timedelta(hours=24)
    assert grace_of(raw + b"grace_after_zero_hours: 2\n") == timedelta(hours=2)
    assert grace_of(raw + b"grace_after_zero_hours: -1\n") == DEFAULT_GRACE
    assert grace_of(raw + b"grace_after_zero_hours: 100000\n") == DEFAULT_GRACE


def test_charges_stay_pending_while_the_database_is_out_of_reach(
    tmp_path: Path, marketplace: Repo
) -> None:
    d = deployment("dep-000000000001", listing=PRICED, version="2.0.0")
    settings = FarmSettings(repo=Path(marketplace.path), state=tmp_path / "s")
    served = Served(d.id, "acct_" + "a" * 26, None, (d.listing.id, d.listing.version))
    events = instance_hours(source="f", served=served, start=T0, end=T0 + timedelta(hours=1))
    charges = instance_charges(events, hour_prices_of(settings))
    assert [c.amount for c in charges] == [Decimal("4.80")]
    record_charges(settings.state, charges)
    record_charges(settings.state, charges)  # recorded twice: pending once
    assert pending_charges(settings.state) == charges


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cycles=st.lists(
        st.tuples(st.integers(1, 4 * 3600), st.sampled_from(["ok", "crash", "again"])),
        min_size=1,
        max_size=6,
    )
)
def test_metering_cycles_retried_anywhere_charge_the_time_run_once(
    tmp_path_factory: pytest.TempPathFactory, cycles: list[tuple[int, str]]
) -> None:
    """Cycles at any times, each possibly crashing after its charges were recorded but
    before its clock was saved (the next cycle reports the same slices again, longer), or
    run twice: the account is charged the price of the time that ran, once."""
    root = tmp_path_factory.mktemp("bill")
    engine = open_database(f"sqlite:///{root / 'a.sqlite'}")
    try:
        store, credit = AccountStore(engine), CreditStore(engine)
        ada = store.sign_in("ada", 1)
        names = Pseudonyms(b"k" * 32)
        served = Served("dep-000000000001", names.of("ada"), None, (PRICED, "2.0.0"))
        state = root / "state"
        state.mkdir()
        clock_file = state / "meter.json"

        def prices(_listing: str, _version: str) -> Decimal:
            return Decimal("4.80")

        def cycle(at: int) -> None:
            meter_running(
                clock_file,
                state / "spool",
                "farm/t",
                {served.deployment: served},
                T0 + timedelta(seconds=at),
                started={served.deployment: T0},
                bill=lambda events: record_charges(state, instance_charges(events, prices)),
            )
            settle_charges(state, credit, names)

        last = 0
        for at, how in sorted(cycles):
            before = clock_file.read_bytes() if clock_file.exists() else None
            cycle(at)
            if how == "again":
                cycle(at)
            elif how == "crash":
                if before is None:
                    clock_file.unlink()
                else:
                    clock_file.write_bytes(before)
            last = at
        cycle(last)  # the cycle after the last crash catches up
        expected = Decimal("4.80") * last / 3600
        spent = credit.balance(ada).spent
        # Each charge is rounded down to the places kept: at most a unit per hour-slice.
        assert expected - Decimal("1e-15") <= spent <= expected
    finally:
        engine.dispose()


def test_the_cycle_renews_subscriptions_in_the_shared_database(farm: Farm) -> None:
    from formarket.accounts.subscriptions import SubscriptionStore, Tier, next_period
    from formarket.farm.credit_cycle import renew_subscriptions

    subs = SubscriptionStore(farm.engine, clock=farm.clock)
    subs.grant(farm.ada, Decimal("20.00"))
    made = subs.subscribe(farm.ada, Tier("lumen-labs/sketch-turbo", "Hobby", Decimal(9), 500, None))
    assert renew_subscriptions(farm.settings, farm.clock) == {}
    farm.clock.now = next_period(T0)
    assert renew_subscriptions(farm.settings, farm.clock) == {made.id: "renewed"}
    assert renew_subscriptions(farm.settings, farm.clock) == {}
    assert farm.credit.balance(farm.ada).balance == Decimal(2)


def test_a_farm_without_an_accounts_database_renews_nothing(tmp_path: Path) -> None:
    from formarket.farm.credit_cycle import renew_subscriptions

    settings = FarmSettings(repo=tmp_path, state=tmp_path / "s")
    assert renew_subscriptions(settings, Clock()) == {}
    assert not (tmp_path / ".git").exists()
    assert not list(tmp_path.rglob("accounts.sqlite"))


def test_a_stop_keeps_what_changed_in_git_since_the_cycle_read_it(farm: Farm) -> None:
    """The cycle read the deployments before someone changed one (here, its settings): the
    stop commits the document as it is now, stopped, and loses nothing of the change."""
    farm.meter(1)
    stale = farm.desired()
    changed = stale["dep-000000000001"].model_copy(update={"settings": {"temperature": 0.5}})
    submit(farm.repo, "main", [changed], "Change", bot_identity(farm.repo, "main"))
    farm.clock.now = T0 + DEFAULT_GRACE
    farm.credit.standing(farm.ada.id, mark=True)
    farm.clock.now = T0 + 2 * DEFAULT_GRACE
    done = charge_and_stop(farm.settings, stale, farm.prices, farm.clock, None)
    assert done.stopped == ("dep-000000000001",)
    now = farm.desired()["dep-000000000001"]
    assert (now.state, now.settings) == ("stopped", {"temperature": 0.5})
