"""The farm runs any published version: one no longer at the tip is built from the commit that
published it, to the build id it had as the tip, and routed as that version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from dulwich.repo import Repo

from formarket.farm import operations, upgrades
from formarket.farm.desired import submit
from formarket.farm.libvirt_conn import Connections
from formarket.farm.reconcile import Domain
from formarket.farm.settings import FarmSettings
from formarket.gateway.routes import load_routes
from formarket.gateway.tokenizer import TOKENIZERS_DIR
from formarket.market.governance import bot_identity
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.standins.github import StandIn
from formarket.standins.libvirt_test import write_test_host
from tests.builder.conftest import shared_cache
from tests.farm import factories
from tests.farm.conftest import ROOT
from tests.farm.test_notify import REPO, from_issue
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
        # Forget what the farm learned of 1.0.0's tokenizer while it was the tip: it is read
        # again from the commit that published it.
        memo = operations.routes_path(farm.settings).parent / TOKENIZERS_DIR / "listings.json"
        memo.unlink()
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


def test_a_cycle_tells_the_issue_of_a_running_deployment_its_version_was_yanked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = market_with_echo_at(tmp_path / "market", "1.0.0")
    farm = Farm(tmp_path, repo)
    bot = bot_identity(repo, "main")
    try:
        with StandIn({"t": "formarket-bot"}) as github:
            number = github.open_issue(REPO, "dana", "Deploy", "body")
            monkeypatch.setenv("GITHUB_API_URL", github.url)
            monkeypatch.setenv("GITHUB_TOKEN", "t")
            farm.settings = dataclasses.replace(farm.settings, github_repo=REPO)
            asked = from_issue(factories.deployment("dep-issue", version="1.0.0"), number)
            submit(repo, "main", [asked], "from an issue", bot)
            farm.settle()
            assert len(github.comments(REPO, number)) == 1  # it runs
            publish(repo, ECHO, "1.1.0", marks={"1.0.0": ("yanked", "it leaks prompts")})
            farm.cycle()
            farm.cycle()
            comments = github.comments(REPO, number)
            assert len(comments) == 2
            assert "it leaks prompts" in comments[-1]["body"]
            assert "dep-issue" in builds(farm)  # still running: yanked stops nothing
    finally:
        farm.pool.close()


def test_an_upgrade_with_no_room_beside_the_old_vm_moves_to_another_host(tmp_path: Path) -> None:
    repo = market_with_echo_at(tmp_path / "market", "1.0.0")
    hosts = []
    for name in ("small-a", "small-b"):  # room for one VM each
        uri = write_test_host(tmp_path / f"{name}.xml", name, 1, 768)
        hosts.append({"name": name, "uri": uri, "vcpus": 1, "memory_mib": 768})
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump({"hosts": hosts}))
    settings = FarmSettings(
        repo=Path(repo.path),
        state=tmp_path / "state",
        store=tmp_path / "store",
        cache=tmp_path / "cache",
        base_cache=shared_cache(),
        hosts=tmp_path / "hosts.yaml",
    )
    pool = Connections()
    bot = bot_identity(repo, "main")

    def settle() -> list[Domain]:
        for _ in range(6):
            operations.reconcile_once(
                settings, operations.run_here(settings, pool, drain=0.1), pool=pool, meter=False
            )
        return operations.observe(operations.inventory(settings).hosts, pool).domains()

    try:
        first = factories.deployment("dep-up", version="1.0.0")
        submit(repo, "main", [first], "one", bot)
        (before,) = settle()
        publish(repo, ECHO, "1.1.0")
        newer = first.listing.model_copy(update={"version": "1.1.0"})
        submit(repo, "main", [first.model_copy(update={"listing": newer})], "upgrade", bot)
        (after,) = settle()
        assert after.version == "1.1.0"
        assert after.host != before.host
        (route,) = load_routes(operations.routes_path(settings)).routes
        assert route.endpoint == after.endpoint
        assert upgrades.load(settings.state)["dep-up"].outcome == "done"
    finally:
        pool.close()
