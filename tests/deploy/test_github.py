"""The GitHub client against the stand-in: routes, pagination, errors translated."""

from __future__ import annotations

import socket
import subprocess  # noqa: TID251 - the stand-in is started as a user starts it
import sys

import httpx  # noqa: TID251 - the stand-in is called as a user calls it
import pytest

from formarket.errors import NotFoundError, UsageError
from formarket.github import GitHub, GitHubError
from formarket.standins.github import StandIn

REPO = "acme/market"


def test_issues_comments_labels_and_events() -> None:
    with StandIn({"t": "formarket-bot"}) as standin, GitHub(standin.url, "t") as github:
        number = standin.open_issue(REPO, "ann", "Deploy", "body", labels=("deployment",))
        for index in range(130):  # more than one page of 100
            standin.add_comment(REPO, number, "ann", f"comment {index}")
        standin.add_label(REPO, number, "approved", "mara")
        standin.remove_label(REPO, number, "approved", "mara")

        issue = github.get_issue(REPO, number)
        posted = github.create_comment(REPO, number, "hello")
        github.add_labels(REPO, number, ["triaged"])
        comments = github.comments(REPO, number)
        events = github.label_events(REPO, number)

    assert (issue.number, issue.author, issue.body, issue.labels) == (
        number,
        "ann",
        "body",
        ("deployment",),
    )
    assert posted.author == "formarket-bot"
    assert len(comments) == 131
    assert comments[-1].body == "hello"
    assert [(e.event, e.label, e.actor) for e in events] == [
        ("labeled", "deployment", "ann"),
        ("labeled", "approved", "mara"),
        ("unlabeled", "approved", "mara"),
        ("labeled", "triaged", "formarket-bot"),
    ]


def test_errors_are_translated() -> None:
    with StandIn({"t": "formarket-bot"}) as standin:
        number = standin.open_issue(REPO, "ann", "Deploy", "body")
        with GitHub(standin.url, "t") as github:
            with pytest.raises(NotFoundError):
                github.get_issue(REPO, number + 1)
            with pytest.raises(UsageError):
                github.get_issue("../../etc", 1)
        with GitHub(standin.url, "wrong") as stranger, pytest.raises(GitHubError) as caught:
            stranger.create_comment(REPO, number, "hi")
        assert "GITHUB_TOKEN" in caught.value.hint

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with GitHub(f"http://127.0.0.1:{port}", timeout=2) as nobody, pytest.raises(GitHubError):
        nobody.get_issue(REPO, 1)


def test_the_standin_runs_as_its_own_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "formarket.standins.github",
            "--port",
            str(port),
            "--token",
            "t=dana-deployer",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("GitHub stand-in on http://127.0.0.1:")
        url = f"http://127.0.0.1:{port}"
        created = httpx.post(
            f"{url}/repos/{REPO}/issues",
            json={"title": "Deploy", "body": "### Agent\n\nx/y", "labels": ["deployment"]},
            headers={"Authorization": "Bearer t"},
        )
        assert created.status_code == 201
        with GitHub(url) as github:
            issue = github.get_issue(REPO, created.json()["number"])
        assert (issue.author, issue.labels) == ("dana-deployer", ("deployment",))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_next_page_on_a_look_alike_host_is_not_followed() -> None:
    # `https://api.github.com.example/...` starts with the base URL's text but is another
    # host: following it would send that host the token.
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(
            200,
            json=[{"id": 1, "user": {"login": "ann"}, "body": "hi"}],
            headers={"Link": '<https://api.github.com.example/x?page=2>; rel="next"'},
        )

    with GitHub("https://api.github.com", "t", transport=httpx.MockTransport(answer)) as github:
        assert [c.body for c in github.comments(REPO, 1)] == ["hi"]
    assert asked == [f"https://api.github.com/repos/{REPO}/issues/1/comments?per_page=100"]
