"""`formarket deployments show|stop|upgrade|logs`: desired and actual state apart, a model's
agents protected from a stop, upgrades pinned in git to a published version that is not
yanked."""

from __future__ import annotations

import json
from pathlib import Path

from dulwich.repo import Repo

from formarket.farm import upgrades
from formarket.farm.desired import read_deployments, submit
from formarket.market.governance import bot_identity
from tests.farm.factories import deployment
from tests.farm.test_cli import env, invoke
from tests.lifecycle import publish

__all__ = ["env"]  # the fixture, shared with the farm's other CLI tests

ECHO = "tinyforge/echo-chat"


def test_a_deployment_that_never_ran_is_wanted_running_but_has_no_vm(
    env: dict[str, str], marketplace: Repo
) -> None:
    bot = bot_identity(marketplace, "main")
    submit(marketplace, "main", [deployment("dep-1", version="1.1.0")], "one", bot)
    code, out = invoke(env, "deployments", "show", "dep-1")
    assert code == 0, out
    assert "desired:           running, version 1.1.0 (git)" in out
    assert "actual:            no VM (libvirt)" in out
    assert "state:" not in out
    code, out = invoke(env, "deployments", "show", "dep-1", "--json")
    view = json.loads(out)
    assert view["desired"] == {"state": "running", "version": "1.1.0"}
    assert view["actual"] == {"state": "no VM", "vms": []}
    code, out = invoke(env, "deployments", "logs", "dep-1")
    assert code == 0, out
    assert "dep-1 has no VM" in out
    # Without a host inventory, the actual state is unknown, never "running".
    code, out = invoke({**env, "FORMARKET_HOSTS": ""}, "deployments", "show", "dep-1", "--json")
    assert json.loads(out)["actual"]["state"].startswith("unknown")


def test_a_model_an_agent_calls_stops_only_with_cascade(
    env: dict[str, str], marketplace: Repo
) -> None:
    bot = bot_identity(marketplace, "main")
    model = deployment("dep-model", version="1.1.0")
    agent = deployment(
        "dep-agent",
        kind="agent",
        listing="tinyforge/faq-bot",
        version="1.1.0",
        model_deployment="dep-model",
    )
    submit(marketplace, "main", [model, agent], "two", bot)
    code, out = invoke(env, "deployments", "stop", "dep-model")
    assert code == 2, out
    assert "dep-agent" in out
    assert "--cascade" in out
    assert read_deployments(marketplace)["dep-model"].state == "running"

    code, out = invoke(env, "deployments", "stop", "dep-model", "--cascade")
    assert code == 0, out
    found = read_deployments(marketplace)
    assert (found["dep-model"].state, found["dep-agent"].state) == ("stopped", "stopped")
    # The agent alone was always stoppable.
    code, out = invoke(env, "deployments", "stop", "dep-agent")
    assert "was stopped already" in out


def test_upgrade_pins_the_newest_version_that_is_not_yanked(
    env: dict[str, str], marketplace: Repo, tmp_path: Path
) -> None:
    bot = bot_identity(marketplace, "main")
    submit(marketplace, "main", [deployment("dep-1", version="1.1.0")], "one", bot)
    publish(marketplace, ECHO, "1.2.0")
    publish(marketplace, ECHO, "1.3.0", marks={"1.3.0": ("yanked", "it drops replies")})
    upgrades.note(tmp_path / "farm", "dep-1", "1.1.0", "1.2.0", "failed", "an older try")

    code, out = invoke(env, "deployments", "upgrade", "dep-1", "--dry-run")
    assert code == 0, out
    assert "would move from 1.1.0 to 1.2.0" in out
    assert read_deployments(marketplace)["dep-1"].listing.version == "1.1.0"

    code, out = invoke(env, "deployments", "upgrade", "dep-1", "--to", "1.3.0")
    assert code == 1
    assert "it drops replies" in out
    code, out = invoke(env, "deployments", "upgrade", "dep-1", "--to", "2.0.0")
    assert code == 1
    assert "1.1.0, 1.2.0, 1.3.0" in out

    code, out = invoke(env, "deployments", "upgrade", "dep-1")
    assert code == 0, out
    assert read_deployments(marketplace)["dep-1"].listing.version == "1.2.0"
    assert "dep-1" not in upgrades.load(tmp_path / "farm")  # asked again: tried again
    code, out = invoke(env, "deployments", "upgrade", "dep-1")
    assert "runs tinyforge/echo-chat@1.2.0 already" in out
