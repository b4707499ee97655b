"""Once an issue's deployments all answer, the farm comments once with how to call them."""

from __future__ import annotations

from pathlib import Path

from formarket.farm.notify import tell_ready_issues
from formarket.github import GitHub
from formarket.schemas.deployment import Deployment
from formarket.standins.github import StandIn
from tests.farm.factories import deployment

REPO = "acme/marketplace"


def from_issue(dep: Deployment, number: int) -> Deployment:
    return dep.model_copy(
        update={"origin": dep.origin.model_copy(update={"kind": "issue", "issue": number})}
    )


def test_an_issue_is_told_once_when_all_its_deployments_answer(tmp_path: Path) -> None:
    model = from_issue(deployment("dep-m"), 1)
    agent = from_issue(
        deployment("dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m"), 1
    )
    desired = {d.id: d for d in (model, agent, deployment("dep-cli"))}
    with StandIn({"t": "formarket-bot"}) as github:
        number = github.open_issue(REPO, "dana", "Deploy", "body")
        assert number == 1

        def client() -> GitHub:
            return GitHub(github.url, "t")

        assert tell_ready_issues(tmp_path, desired, {"dep-m"}, REPO, client) == []
        assert github.comments(REPO, 1) == []
        told = tell_ready_issues(
            tmp_path, desired, {"dep-m", "dep-a"}, REPO, client, "https://gw.example"
        )
        assert told == [1]
        [comment] = github.comments(REPO, 1)
        assert "`dep-a`: agent tinyforge/faq-bot@1.0.0" in comment["body"]
        assert "curl -s https://gw.example/v1/chat/completions" in comment["body"]
        assert '"model": "dep-a"' in comment["body"]
        # Told once, across restarts of the farm (it is remembered in the state folder).
        assert tell_ready_issues(tmp_path, desired, {"dep-m", "dep-a"}, REPO, client) == []
        assert len(github.comments(REPO, 1)) == 1


def test_a_failed_comment_is_tried_again_next_cycle(tmp_path: Path) -> None:
    desired = {"dep-m": from_issue(deployment("dep-m"), 7)}
    with StandIn({"t": "formarket-bot"}) as github:
        # Issue 7 does not exist yet: GitHub answers 404, nothing is remembered.
        assert (
            tell_ready_issues(tmp_path, desired, {"dep-m"}, REPO, lambda: GitHub(github.url, "t"))
            == []
        )
