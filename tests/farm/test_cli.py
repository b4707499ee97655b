"""`formarket deployments` and `formarket farm reconcile`, as a user types them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from dulwich.repo import Repo

from formarket.cli import main
from formarket.farm.desired import read_deployments, submit
from formarket.market.governance import bot_identity
from formarket.standins.libvirt_test import write_test_host
from tests.builder.conftest import shared_cache
from tests.farm.factories import deployment


@pytest.fixture
def env(tmp_path: Path, marketplace: Repo) -> dict[str, str]:
    uri = write_test_host(tmp_path / "host.xml", "sim-1", 4, 4096)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(f"hosts:\n  - {{name: sim-1, uri: '{uri}', vcpus: 4, memory_mib: 4096}}\n")
    return {
        "FORMARKET_REPO": marketplace.path,
        "FORMARKET_STATE": str(tmp_path / "farm"),
        "FORMARKET_HOSTS": str(hosts),
        "FORMARKET_BASE_CACHE": str(shared_cache()),
        "FORMARKET_GATEWAY_DIR": str(tmp_path / "gateway"),
    }


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_list_show_and_stop(env: dict[str, str], marketplace: Repo) -> None:
    code, out = invoke(env, "deployments", "list")
    assert code == 0
    assert "no deployments running" in out
    submit(
        marketplace,
        "main",
        [deployment("dep-1"), deployment("dep-2")],
        "two",
        bot_identity(marketplace, "main"),
    )
    code, out = invoke(env, "deployments", "list")
    assert code == 0
    assert "dep-1  model  tinyforge/echo-chat@1.0.0  1 vCPU 512 MiB  ada" in out
    assert "the farm has not reconciled yet" in out
    code, out = invoke(env, "deployments", "show", "dep-1", "--json")
    assert code == 0
    assert json.loads(out)["listing"] == {"id": "tinyforge/echo-chat", "version": "1.0.0"}
    code, out = invoke(env, "deployments", "stop", "dep-1")
    assert code == 0
    assert "dep-1 stopped in git" in out
    assert read_deployments(marketplace)["dep-1"].state == "stopped"
    code, out = invoke(env, "deployments", "stop", "dep-1")
    assert "was stopped already" in out
    code, out = invoke(env, "deployments", "list", "--json")
    assert [d["id"] for d in json.loads(out)["deployments"]] == ["dep-2"]
    code, out = invoke(env, "deployments", "show", "dep-404")
    assert code == 1
    assert "no deployment dep-404" in out
    code, out = invoke(env, "deployments", "stop", "dep-404")
    assert code == 1


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root")
def test_reconcile_here_builds_places_and_routes(env: dict[str, str], marketplace: Repo) -> None:
    submit(
        marketplace,
        "main",
        [deployment("dep-1", vcpus=2, version="1.1.0")],
        "one",
        bot_identity(marketplace, "main"),
    )
    code, out = invoke(env, "farm", "reconcile", "--here", "--until-settled", "120")
    assert code == 0, out
    assert "build: tinyforge/echo-chat@1.1.0" in out
    assert "deploy: dep-1 on sim-1" in out
    assert "1 running" in out.splitlines()[-1]
    code, out = invoke(env, "deployments", "list")
    assert "running" in out or "http://" in out
    code, out = invoke(env, "farm", "reconcile", "--json")
    summary = json.loads(out.splitlines()[-1])
    # A test-driver host forgets its domains with its connection: a new process sees none.
    assert summary["deploys"] in ([], ["dep-1 on sim-1"])


def test_reconcile_without_an_inventory_says_what_to_set(env: dict[str, str]) -> None:
    env = {**env, "FORMARKET_HOSTS": ""}
    code, out = invoke(env, "farm", "reconcile", "--here")
    assert code == 2  # a usage error
    assert "the farm has no host inventory" in out
    assert "FORMARKET_HOSTS" in out
