"""Desired state in git: written by the bot, idempotent, racing writers lose nothing."""

from __future__ import annotations

import threading

import pytest
from dulwich.objects import Commit
from dulwich.repo import Repo

from formarket.errors import InputError, NotFoundError
from formarket.farm.desired import dump_deployment, read_deployments, set_state, submit
from formarket.market.governance import bot_identity
from formarket.market.layout import deployment_path
from formarket.market.writer import Identity, commit_changes
from tests.farm.factories import deployment


def test_submit_commits_as_the_bot_and_rerunning_changes_nothing(marketplace: Repo) -> None:
    bot = bot_identity(marketplace, "main")
    assert bot.name == "formarket-bot"
    first = submit(marketplace, "main", [deployment("dep-1")], "Deploy", bot)
    assert first is not None
    commit = marketplace[first]
    assert isinstance(commit, Commit)
    assert commit.author.startswith(b"formarket-bot <")
    assert submit(marketplace, "main", [deployment("dep-1")], "Deploy", bot) is None
    assert read_deployments(marketplace) == {"dep-1": deployment("dep-1")}


def test_stop_changes_only_the_state(marketplace: Repo) -> None:
    bot = bot_identity(marketplace, "main")
    submit(marketplace, "main", [deployment("dep-1")], "Deploy", bot)
    assert set_state(marketplace, "main", "dep-1", "stopped", "Stop", bot) is not None
    assert read_deployments(marketplace)["dep-1"].state == "stopped"
    assert set_state(marketplace, "main", "dep-1", "stopped", "Stop", bot) is None
    with pytest.raises(NotFoundError):
        set_state(marketplace, "main", "dep-404", "stopped", "Stop", bot)


def test_an_unchanged_document_is_parsed_once_across_commits(marketplace: Repo) -> None:
    bot = bot_identity(marketplace, "main")
    submit(marketplace, "main", [deployment("dep-1"), deployment("dep-2")], "Deploy", bot)
    before = read_deployments(marketplace)
    set_state(marketplace, "main", "dep-2", "stopped", "Stop", bot)
    after = read_deployments(marketplace)
    assert after["dep-1"] is before["dep-1"]  # the same blob at a new commit: not parsed again
    assert after["dep-2"] is not before["dep-2"]
    assert after["dep-2"].state == "stopped"


def test_racing_writers_lose_nothing(marketplace: Repo) -> None:
    bot = bot_identity(marketplace, "main")

    def write(first: int) -> None:
        for i in range(first, first + 10):
            submit(marketplace, "main", [deployment(f"dep-{i}")], f"Deploy {i}", bot)

    threads = [threading.Thread(target=write, args=(n * 10,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(read_deployments(marketplace)) == sorted(f"dep-{i}" for i in range(30))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("dep-x.yaml", b"id: dep-x\nkind: [\n", "not valid YAML"),
        ("dep-x.yaml", b"id: dep-x\nkind: model\n", "listing"),
        ("dep-y.yaml", dump_deployment(deployment("dep-z")), "belongs in another file"),
        ("dep-x.yaml", b"!!python/object:os.system x\n", ""),
    ],
)
def test_a_broken_document_is_reported_and_the_rest_still_read(
    marketplace: Repo, name: str, content: bytes, expected: str
) -> None:
    bot = bot_identity(marketplace, "main")
    submit(marketplace, "main", [deployment("dep-1")], "Deploy", bot)
    commit_changes(
        marketplace,
        "main",
        {f"registry/deployments/{name}": content},
        "hand edit",
        Identity("x", "x@example.org"),
    )
    problems: list[str] = []
    assert set(read_deployments(marketplace, problems=problems)) == {"dep-1"}
    assert len(problems) == 1
    assert name in problems[0]
    assert expected in problems[0]
    with pytest.raises(InputError):
        read_deployments(marketplace)


def test_the_document_is_canonical() -> None:
    text = dump_deployment(deployment("dep-1")).decode()
    assert text.startswith("# Desired state")
    assert "id: dep-1\nkind: model\n" in text
    assert deployment_path("dep-1") == "registry/deployments/dep-1.yaml"
