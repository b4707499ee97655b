"""A marketplace repository made from the starter registry, and a GitHub stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo

from formarket.deploy.issue_flow import Outcome, handle_event
from formarket.farm.desired import read_deployments
from formarket.farm.settings import FarmSettings
from formarket.github import GitHub
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.schemas.deployment import Deployment
from formarket.standins.github import StandIn

ROOT = Path(__file__).resolve().parent.parent.parent
REPO = "acme/market"
BOT_TOKEN = "bot-token"
MAINTAINER = "mara-maintainer"
DEPLOYER = "dana-deployer"

GOOD_BODY = """### Agent

tinyforge/faq-bot

### Model

tinyforge/echo-chat

### Solution

_No response_

### Resources

_No response_

### Settings

```yaml
handoff_message: A person will reply.
```
"""


def form(**fields: str) -> str:
    """An issue body as GitHub renders the form: every field, `_No response_` when empty."""
    names = ("Agent", "Model", "Solution", "Resources", "Settings")
    return "\n\n".join(
        f"### {name}\n\n{fields.get(name.lower()) or '_No response_'}" for name in names
    )


def make_market(path: Path, extra: dict[str, bytes] | None = None) -> FarmSettings:
    repo = Repo.init(str(path), mkdir=True)
    files = import_tree(ROOT, ("registry", "schemas"))
    files.update(extra or {})
    commit_changes(repo, "main", files, "the starter registry", Identity(MAINTAINER, "m@x.org"))
    return FarmSettings(repo=path, branch="main")


@pytest.fixture
def market(tmp_path: Path) -> FarmSettings:
    return make_market(tmp_path / "market")


def tip(settings: FarmSettings) -> bytes:
    return Repo(str(settings.repo)).refs[b"refs/heads/main"]


def deployments(settings: FarmSettings) -> dict[str, Deployment]:
    return read_deployments(Repo(str(settings.repo)), settings.branch)


@dataclass
class Desk:
    """The stand-in GitHub, a client authenticated as the bot, and the farm's settings."""

    standin: StandIn
    github: GitHub
    settings: FarmSettings
    tmp: Path

    def open(self, author: str, body: str, title: str = "Deploy: faq-bot") -> int:
        return self.standin.open_issue(REPO, author, title, body, labels=("deployment",))

    def fire(self, number: int, action: str, sender: str, **extra: Any) -> Outcome:
        payload = self.standin.payload(REPO, number, action, sender, **extra)
        path = self.tmp / f"event-{number}-{action}.json"
        path.write_text(json.dumps(payload), encoding="utf-8")
        return handle_event(path, self.settings, self.github)

    def comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.standin.comments(REPO, number)]


@pytest.fixture
def desk(market: FarmSettings, tmp_path: Path) -> Iterator[Desk]:
    with StandIn({BOT_TOKEN: "formarket-bot"}) as standin, GitHub(standin.url, BOT_TOKEN) as github:
        yield Desk(standin, github, market, tmp_path)
