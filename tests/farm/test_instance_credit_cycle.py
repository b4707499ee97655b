"""The whole path on simulated hosts (libvirt's test driver): reconcile cycles meter a
deployment priced by the hour, charge its account's balance, and once the account has been at
zero for the grace of the terms, the bot commits it stopped and the next cycle stops its VM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.accounts import AccountStore, open_database
from formarket.accounts.credit import CreditStore
from formarket.farm import operations, status
from formarket.farm.desired import read_deployments, submit
from formarket.market.governance import bot_identity
from formarket.market.writer import Identity, commit_changes, import_tree
from tests.farm.conftest import ROOT
from tests.farm.test_testdriver_farm import Farm, deployment

ECHO = "registry/models/tinyforge/echo-chat/listing.yaml"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def priced_market(tmp_path: Path) -> Repo:
    """The starter registry, with echo-chat priced at 3.60 an hour from its first commit."""
    repo = Repo.init(str(tmp_path / "marketplace"), mkdir=True)
    files = import_tree(ROOT, ("registry", "builder", "royalties"))
    files[ECHO] = (
        files[ECHO]
        .replace(
            b"pricing:\n  model: free\n",
            b'pricing:\n  model: per_instance_hour\n  currency: USD\n  per_hour: "3.60"\n',
        )
        .replace(b"metered: [requests]", b"metered: [instance_hours]")
    )
    commit_changes(repo, "main", files, "Starter registry", Identity("mara", "mara@example.org"))
    return repo


def test_cycles_charge_instance_time_and_stop_an_account_out_of_credit(
    tmp_path: Path, priced_market: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'accounts.sqlite'}"
    monkeypatch.setenv("FORMARKET_DATABASE_URL", url)
    engine = open_database(url)
    farm = Farm(tmp_path / "farm", priced_market)
    try:
        ada = AccountStore(engine).sign_in("ada", 1)
        credit = CreditStore(engine)
        credit.grant(ada, Decimal("5.00"))
        account = status.farm_pseudonyms(farm.settings).of("ada")
        dep = deployment("dep-priced").model_copy(update={"account": account, "requester": account})
        submit(priced_market, "main", [dep], "Deploy", bot_identity(priced_market, "main"))
        farm.settle()
        now = [T0]

        def cycle() -> operations.Cycle:
            return operations.reconcile_once(
                farm.settings,
                operations.run_here(farm.settings, farm.pool),
                pool=farm.pool,
                leases=farm.leases,
                clock=lambda: now[0],
            )

        cycle()  # the meter's clock starts
        now[0] = T0 + timedelta(hours=2)
        done = cycle()
        assert done.credit.charged == 2
        assert credit.balance(ada).balance == Decimal("5.00") - Decimal("7.20")
        assert done.summary()["out_of_credit"] == [account]
        assert credit.standing(ada.id).zero_since == now[0]
        now[0] = T0 + timedelta(hours=25)
        assert cycle().credit.stopped == ()
        now[0] = T0 + timedelta(hours=26)
        assert cycle().credit.stopped == ("dep-priced",)
        assert read_deployments(priced_market, "main", problems=[])["dep-priced"].state == (
            "stopped"
        )
        cycle()  # the stop itself
        actual = operations.observe(operations.inventory(farm.settings).hosts, farm.pool)
        assert "dep-priced" not in {d.deployment for d in actual.domains() if d.running}
        # Every hour that ran was charged once, however many cycles saw it.
        assert credit.balance(ada).spent == Decimal("3.60") * 26
    finally:
        farm.pool.close()
        engine.dispose()
