"""Every published version stays deployable: an old one by ID@VERSION, a solution's pinned one,
a deprecated one with its owners' warning; a yanked one is refused with their message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.farm.settings import FarmSettings
from tests.deploy.conftest import ROOT, deployments, make_market, tip
from tests.deploy.test_cli import deploy
from tests.lifecycle import listing_path, listing_text_at, publish

ECHO = "tinyforge/echo-chat"


@pytest.fixture
def market(tmp_path: Path) -> FarmSettings:
    """The starter registry with echo-chat first published at 1.0.0 (the solution pinning it),
    then 1.1.0 merged."""
    path = listing_path(ECHO)
    solution = "registry/solutions/tinyforge/faq-demo.yaml"
    old = listing_text_at("1.0.0", ECHO, (ROOT / path).read_bytes())
    pin = b"  id: tinyforge/echo-chat\n  version: "
    pinned = (ROOT / solution).read_bytes().replace(pin + b"1.1.0", pin + b"1.0.0")
    assert pinned != (ROOT / solution).read_bytes()
    settings = make_market(tmp_path / "market", {path: old, solution: pinned})
    publish(Repo(str(settings.repo)), ECHO, "1.1.0")
    return settings


def test_an_older_version_deploys_pinned_at_that_version(market: FarmSettings) -> None:
    result = deploy(market, "--model", f"{ECHO}@1.0.0")

    assert result.exit_code == 0, result.output
    assert f"{ECHO}@1.0.0 (model)" in result.output
    (model,) = deployments(market).values()
    assert model.listing.version == "1.0.0"
    # Without a version, the newest.
    assert f"{ECHO}@1.1.0 (model)" in deploy(market, "--model", ECHO, "--dry-run").output


def test_a_solution_pinned_to_an_older_version_deploys(market: FarmSettings) -> None:
    result = deploy(market, "--solution", "tinyforge/faq-demo")

    assert result.exit_code == 0, result.output
    found = {d.kind: d for d in deployments(market).values()}
    assert found["model"].listing.version == "1.0.0"
    assert found["agent"].model_deployment == found["model"].id


def test_a_version_never_published_is_refused_naming_the_published_ones(
    market: FarmSettings,
) -> None:
    before = tip(market)
    result = deploy(market, "--model", f"{ECHO}@1.0.5")
    assert result.exit_code == 1
    assert "1.0.0, 1.1.0" in result.output
    assert tip(market) == before


def test_deprecated_deploys_with_a_warning_and_yanked_is_refused(market: FarmSettings) -> None:
    repo = Repo(str(market.repo))
    publish(repo, ECHO, "1.1.0", marks={"1.0.0": ("deprecated", "move to 1.1.0 by March")})
    warned = deploy(market, "--model", f"{ECHO}@1.0.0", "--dry-run", "--json")
    assert warned.exit_code == 0, warned.output
    assert json.loads(warned.output)["warnings"] == [
        f"model {ECHO}@1.0.0 is deprecated: move to 1.1.0 by March"
    ]
    assert "Warning: model" in deploy(market, "--model", f"{ECHO}@1.0.0", "--dry-run").output

    publish(repo, ECHO, "1.1.0", marks={"1.0.0": ("yanked", "it answers in the wrong language")})
    before = tip(market)
    refused = deploy(market, "--model", f"{ECHO}@1.0.0")
    assert refused.exit_code == 1
    assert "yanked" in refused.output
    assert "it answers in the wrong language" in refused.output
    assert tip(market) == before
    # The solution that pins it is refused too; the newest version still deploys.
    assert deploy(market, "--solution", "tinyforge/faq-demo", "--dry-run").exit_code == 1
    assert deploy(market, "--model", ECHO, "--dry-run").exit_code == 0
