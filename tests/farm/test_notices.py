"""Users of running deployments hear when their version is deprecated or yanked: one comment
on the deployment's issue per mark, with the owners' message and the upgrade command."""

from __future__ import annotations

from pathlib import Path

from formarket.farm.notices import tell_marked_issues
from formarket.github import GitHub
from formarket.schemas.listing import VersionMark
from formarket.standins.github import StandIn
from tests.farm.factories import deployment
from tests.farm.test_notify import REPO, from_issue


def test_each_mark_is_told_once_on_the_issues_that_run_it(tmp_path: Path) -> None:
    old = from_issue(deployment("dep-old", version="1.0.0"), 1)
    new = from_issue(deployment("dep-new", version="1.1.0"), 2)
    desired = {d.id: d for d in (old, new, deployment("dep-cli", version="1.0.0"))}
    marks: dict[str, VersionMark] = {}
    with StandIn({"t": "formarket-bot"}) as github:
        for _ in range(2):
            github.open_issue(REPO, "dana", "Deploy", "body")

        def tell() -> list[int]:
            return tell_marked_issues(
                tmp_path, desired, lambda _id: marks, REPO, lambda: GitHub(github.url, "t")
            )

        assert tell() == []
        marks["1.0.0"] = VersionMark(status="deprecated", message="move to 1.1.0")
        assert tell() == [1]
        [comment] = github.comments(REPO, 1)
        assert (
            "tinyforge/echo-chat@1.0.0 is deprecated** by its owners: move to 1.1.0"
            in (comment["body"])
        )
        assert "formarket deployments upgrade dep-old" in comment["body"]
        assert tell() == []  # once
        marks["1.0.0"] = VersionMark(status="yanked", message="it leaks prompts")
        assert tell() == [1]
        assert "takes no new deployments" in github.comments(REPO, 1)[-1]["body"]
        assert github.comments(REPO, 2) == []
        assert tell() == []
