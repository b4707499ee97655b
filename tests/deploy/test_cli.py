"""`formarket deploy` and `formarket issue-deploy` through click, on a scratch repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from formarket.cli import main
from formarket.deploy.checks import deployment_id, issue_seed
from formarket.farm.settings import FarmSettings
from formarket.farm.status import farm_pseudonyms
from formarket.market.layout import deployment_path
from formarket.standins.github import StandIn
from tests.deploy.conftest import BOT_TOKEN, DEPLOYER, GOOD_BODY, REPO, deployments, tip
from tests.gitcli import clone, head, status

CLEAN_ENV = {"FORMARKET_HOSTS": "", "FORMARKET_BRANCH": "", "FORMARKET_REPO": ""}


def deploy(market: FarmSettings, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        main, ["deploy", *args, "--repo", str(market.repo)], env={**CLEAN_ENV, **(env or {})}
    )


def test_dry_run_prints_the_plan_and_commits_nothing(market: FarmSettings) -> None:
    before = tip(market)

    result = deploy(market, "tinyforge/faq-bot", "--model", "tinyforge/echo-chat", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "build  dep-" in result.output
    assert "tinyforge/echo-chat@1.1.0 (model)" in result.output
    assert "tinyforge/faq-bot@1.1.0: USD 0.001 per request" in result.output
    assert "tinyforge/echo-chat@1.1.0: free" in result.output
    assert "Dry run: nothing was committed." in result.output
    assert tip(market) == before


def test_deploy_commits_the_model_then_the_agent(market: FarmSettings) -> None:
    result = deploy(
        market,
        "tinyforge/faq-bot",
        "--set",
        "min_match=0.5",
        "--secret",
        "SUPPORT_KEY=env:SUPPORT_KEY",
        "--account",
        "acme-corp",
    )

    assert result.exit_code == 0, result.output
    found = deployments(market)
    (model,) = (d for d in found.values() if d.kind == "model")
    (agent,) = (d for d in found.values() if d.kind == "agent")
    # No --model: the agent's first compatible preferred model.
    assert model.listing.id == "tinyforge/echo-chat"
    assert agent.model_deployment == model.id
    assert agent.settings == {"min_match": 0.5, "language": "en"}  # the schema's defaults
    assert [s.ref for s in agent.secrets] == ["env:SUPPORT_KEY"]
    assert agent.account == model.account == farm_pseudonyms(market).of("acme-corp")
    assert agent.origin.kind == "cli"
    assert f"Committed {model.id}, {agent.id}" in result.output

    # A second agent for the same account reuses the running model deployment.
    again = deploy(market, "tinyforge/faq-bot", "--account", "acme-corp")
    assert again.exit_code == 0, again.output
    assert f"reuse  {model.id}" in again.output
    agents = [d for d in deployments(market).values() if d.kind == "agent"]
    assert len(agents) == 2
    assert {a.model_deployment for a in agents} == {model.id}


def test_a_model_alone(market: FarmSettings) -> None:
    result = deploy(market, "--model", "tinyforge/echo-chat", "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["committed"] is True
    (dep,) = plan["deployments"]
    assert (dep["kind"], dep["listing"]["id"]) == ("model", "tinyforge/echo-chat")
    assert plan["prices"] == [
        {"listing": "tinyforge/echo-chat@1.1.0", "currency": None, "per_unit": []}
    ]
    assert list(deployments(market)) == [dep["id"]]


def test_every_reason_is_given_and_nothing_committed(market: FarmSettings) -> None:
    before = tip(market)

    result = deploy(
        market,
        "tinyforge/faq-bot",
        "--model",
        "tinyforge/tiny-embed",
        "--vcpus",
        "8",
        "--set",
        "min_match=3",
    )

    assert result.exit_code == 1
    assert "the request was refused; nothing was committed" in result.output
    for reason in (
        "tinyforge/faq-bot needs a model for chat or text-generation",
        "tinyforge/faq-bot may use at most 1 vCPUs; 8 were asked for.",
        "setting min_match: 3 is greater than the maximum of 1.",
    ):
        assert reason in result.output
    assert tip(market) == before


def test_refusals_as_json(market: FarmSettings) -> None:
    result = deploy(market, "acme/nothing-here", "--json")

    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "refused": ["There is no agent listing acme/nothing-here in the registry."]
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["tinyforge/echo-chat"], "tinyforge/echo-chat is a model, not an agent"),
        (["tinyforge/faq-bot", "--version", "2.0.0"], "has no published version 2.0.0"),
        (["tinyforge/faq-bot", "--secret", "KEY=hunter2"], "not given by reference"),
        (["tinyforge/faq-bot", "--set", "bad key=1"], "is not KEY=VALUE"),
        (["tinyforge/faq-bot", "--gpu", "H100:1"], "does not use GPUs"),
        (["tinyforge/faq-bot", "--gpu", "TPU:1"], "is not MODEL:COUNT"),
        (["--solution", "tinyforge/faq-demo", "--model", "x/y"], "a solution names its own"),
        ([], "name an agent, a model"),
    ],
)
def test_wrong_requests(market: FarmSettings, args: list[str], fragment: str) -> None:
    before = tip(market)

    result = deploy(market, *args)

    assert result.exit_code in (1, 2)
    assert fragment in result.output
    assert "hunter2" not in result.output
    assert tip(market) == before


def test_the_plan_says_where_it_will_run(market: FarmSettings, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        "hosts:\n"
        "  - {name: small, uri: 'test:///default', vcpus: 1, memory_mib: 768}\n"
        "  - {name: gpu-box, uri: 'test:///default', vcpus: 16, memory_mib: 65536, gpus: {L4: 1}}\n"
    )

    result = deploy(
        market,
        "tinyforge/faq-bot",
        "--model",
        "tinyforge/echo-chat",
        "--dry-run",
        env={"FORMARKET_HOSTS": str(hosts)},
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The model fills the small host; the agent goes to the GPU host, the only one left.
    assert "runs on small" in lines[2]
    assert "runs on gpu-box" in lines[4]

    gpu = deploy(
        market,
        "--model",
        "northwind-ai/northwind-chat-8b",
        "--dry-run",
        env={"FORMARKET_HOSTS": str(hosts)},
    )
    assert gpu.exit_code == 0, gpu.output
    assert "1× L4" in gpu.output
    assert "runs on gpu-box" in gpu.output
    assert "USD 0.20 per million input tokens, USD 0.60 per million output tokens" in gpu.output

    hosts.write_text(
        "hosts:\n  - {name: small, uri: 'test:///default', vcpus: 1, memory_mib: 768}\n"
    )
    nowhere = deploy(
        market,
        "--model",
        "northwind-ai/northwind-chat-8b",
        "--dry-run",
        env={"FORMARKET_HOSTS": str(hosts)},
    )
    assert nowhere.exit_code == 0, nowhere.output
    assert "runs nowhere yet: no host has L4 GPUs" in nowhere.output


def test_wait_needs_a_committed_deployment(market: FarmSettings) -> None:
    result = deploy(market, "tinyforge/faq-bot", "--dry-run", "--wait")

    assert result.exit_code == 2
    assert "leave out --dry-run" in result.output


def test_issue_deploy_command(market: FarmSettings, tmp_path: Path) -> None:
    with StandIn({BOT_TOKEN: "formarket-bot"}) as standin:
        number = standin.open_issue(REPO, DEPLOYER, "Deploy", GOOD_BODY, labels=("deployment",))
        event = standin.write_payload(
            tmp_path / "event.json", standin.payload(REPO, number, "opened", DEPLOYER)
        )
        env = {
            **CLEAN_ENV,
            "GITHUB_API_URL": standin.url,
            "GITHUB_TOKEN": BOT_TOKEN,
            "FORMARKET_REPO": str(market.repo),
        }

        result = CliRunner().invoke(main, ["issue-deploy", "--event", str(event)], env=env)

        assert result.exit_code == 0, result.output
        assert f"issue #{number}: deployed dep-" in result.output
        assert len(deployments(market)) == 2
        assert "**Deployment accepted**" in standin.comments(REPO, number)[0]["body"]

        missing = CliRunner().invoke(
            main, ["issue-deploy", "--event", str(tmp_path / "nope.json")], env=env
        )
        assert missing.exit_code == 1
        assert "cannot read the event payload" in missing.output


# --- in a working clone with main checked out ---------------------------------------------


def _working_clone(market: FarmSettings, tmp_path: Path) -> FarmSettings:
    return FarmSettings(repo=clone(market.repo, tmp_path / "work"), branch="main")


def test_deploy_in_a_working_clone_leaves_git_status_clean(
    market: FarmSettings, tmp_path: Path
) -> None:
    work = _working_clone(market, tmp_path)
    readme = work.repo / "registry/models/tinyforge/echo-chat/README.md"
    readme.write_bytes(readme.read_bytes() + b"\nA note of mine.\n")

    result = deploy(work, "tinyforge/faq-bot", "--account", "acme-corp")

    assert result.exit_code == 0, result.output
    found = deployments(work)
    assert len(found) == 2
    for dep in found:
        assert (work.repo / deployment_path(dep)).is_file()
    # Only the person's own edit is left to commit; the bot's files are in, not deleted.
    assert status(work.repo) == [" M registry/models/tinyforge/echo-chat/README.md"]
    assert head(work.repo) == tip(work).decode()


def test_stopping_a_deployment_edited_locally_is_refused(
    market: FarmSettings, tmp_path: Path
) -> None:
    work = _working_clone(market, tmp_path)
    assert deploy(work, "--model", "tinyforge/echo-chat").exit_code == 0
    (dep,) = deployments(work)
    path = deployment_path(dep)
    (work.repo / path).write_bytes(b"# my own plan\n")
    before = tip(work)

    result = CliRunner().invoke(
        main, ["deployments", "stop", dep, "--repo", str(work.repo)], env=CLEAN_ENV
    )

    assert result.exit_code == 1
    assert path in result.output
    assert "stash" in result.output
    assert tip(work) == before
    assert (work.repo / path).read_bytes() == b"# my own plan\n"
    assert status(work.repo) == [f" M {path}"]


def test_an_issue_deploy_over_a_local_file_is_refused(market: FarmSettings, tmp_path: Path) -> None:
    work = _working_clone(market, tmp_path)
    with StandIn({BOT_TOKEN: "formarket-bot"}) as standin:
        number = standin.open_issue(REPO, DEPLOYER, "Deploy", GOOD_BODY, labels=("deployment",))
        event = standin.write_payload(
            tmp_path / "event.json", standin.payload(REPO, number, "opened", DEPLOYER)
        )
        # The issue's deployment ids follow from the repository and the issue number.
        path = deployment_path(deployment_id(issue_seed(REPO, number), "model"))
        (work.repo / path).parent.mkdir(parents=True, exist_ok=True)
        (work.repo / path).write_bytes(b"# a draft\n")
        before = tip(work)
        env = {
            **CLEAN_ENV,
            "GITHUB_API_URL": standin.url,
            "GITHUB_TOKEN": BOT_TOKEN,
            "FORMARKET_REPO": str(work.repo),
        }

        result = CliRunner().invoke(main, ["issue-deploy", "--event", str(event)], env=env)

        assert result.exit_code == 1
        assert path in result.output
        assert tip(work) == before
        assert deployments(work) == {}
        assert status(work.repo) == [f"?? {path}"]
