"""The farm runs any published version: one no longer at the tip is built from the commit that
published it, to the build id it had as the tip, and routed as that version."""

from __future__ import annotations

from pathlib import Path

from dulwich.repo import Repo

from formarket.farm import operations, upgrades
from formarket.farm.desired import submit
from formarket.gateway.routes import load_routes
from formarket.market.governance import bot_identity
from formarket.market.writer import Identity, commit_changes, import_tree
from tests.farm import factories
from tests.farm.conftest import ROOT
from tests.farm.test_testdriver_farm import Farm
from tests.lifecycle import listing_path, listing_text_at, publish

ECHO = "tinyforge/echo-chat"


def market_with_echo_at(root: Path, version: str) -> Repo:
    repo = Repo.init(str(root), mkdir=True)
    files = import_tree(ROOT, ("registry", "builder", "royalties"))
    path = listing_path(ECHO)
    files[path] = listing_text_at(version, ECHO, files[path] or b"")
    commit_changes(repo, "main", files, "Starter registry", Identity("mara", "mara@example.org"))
    return repo


def builds(farm: Farm) -> dict[str, str]:
    actual = operations.observe(operations.inventory(farm.settings).hosts, farm.pool)
    return {d.deployment: d.build_id for d in actual.domains()}


def test_an_old_version_is_built_as_published_and_routed_as_itself(tmp_path: Path) -> None:
    repo = market_with_echo_at(tmp_path / "market", "1.0.0")
    farm = Farm(tmp_path, repo)
    bot = bot_identity(repo, "main")
    try:
        submit(repo, "main", [factories.deployment("dep-first", version="1.0.0")], "one", bot)
        farm.settle()
        first = builds(farm)["dep-first"]

        publish(repo, ECHO, "1.1.0")
        later = [
            factories.deployment("dep-again", version="1.0.0"),
            factories.deployment("dep-newer", version="1.1.0"),
        ]
        submit(repo, "main", later, "two more", bot)
        cycle = farm.settle()
        assert not cycle.plan.refused
        found = builds(farm)
        assert found["dep-again"] == first  # the same image, not built again
        routed = load_routes(operations.routes_path(farm.settings)).routes
        routes = {r.deployment: r for r in routed}
        assert routes["dep-again"].model is not None
        assert routes["dep-again"].model.version == "1.0.0"
        assert routes["dep-newer"].model is not None
        assert routes["dep-newer"].model.version == "1.1.0"
        assert routes["dep-again"].tokenizer is not None
    finally:
        farm.pool.close()


def test_a_version_never_published_is_not_deployed(tmp_path: Path) -> None:
    repo = market_with_echo_at(tmp_path / "market", "1.0.0")
    farm = Farm(tmp_path, repo)
    bot = bot_identity(repo, "main")
    try:
        submit(repo, "main", [factories.deployment("dep-ghost", version="3.0.0")], "one", bot)
        for _ in range(2):
            farm.cycle()
        assert "dep-ghost" not in builds(farm)
    finally:
        farm.pool.close()


def test_an_upgrade_starts_the_new_version_beside_the_old_then_moves_the_route(
    tmp_path: Path,
) -> None:
    repo = market_with_echo_at(tmp_path / "market", "1.0.0")
    farm = Farm(tmp_path, repo)
    bot = bot_identity(repo, "main")
    path = operations.routes_path(farm.settings)
    try:
        first = factories.deployment("dep-up", version="1.0.0")
        submit(repo, "main", [first], "one", bot)
        farm.settle()
        (before,) = load_routes(path).routes
        publish(repo, ECHO, "1.1.0")
        moved = first.model_copy(
            update={"listing": first.listing.model_copy(update={"version": "1.1.0"})}
        )
        submit(repo, "main", [moved], "upgrade", bot)

        farm.settle()
        actual = operations.observe(operations.inventory(farm.settings).hosts, farm.pool)
        (domain,) = actual.domains()
        assert (domain.version, domain.slot) == ("1.1.0", 1)  # the other slot; the old is gone
        (after,) = load_routes(path).routes
        assert after.endpoint != before.endpoint
        assert after.endpoint == domain.endpoint
        assert after.model is not None
        assert after.model.version == "1.1.0"
        assert upgrades.load(farm.settings.state)["dep-up"].outcome == "done"

        # And back to slot 0 on the next one.
        again = moved.model_copy(update={"listing": first.listing})
        submit(repo, "main", [again], "downgrade", bot)
        farm.settle()
        actual = operations.observe(operations.inventory(farm.settings).hosts, farm.pool)
        assert [(d.version, d.slot) for d in actual.domains()] == [("1.0.0", 0)]
    finally:
        farm.pool.close()
