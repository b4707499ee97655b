"""The one GitHub REST client: issues, comments, labels and label events.

The deployment issue flow (`deploy`) and the farm's comments on ready issues (`farm.notify`)
both use it, so it stands below both. Requests go through `formarket.httpclient`, which takes a
transport for tests. The base URL is configurable (`GITHUB_API_URL`, as GitHub Actions sets it)
so that tests and the demo talk to `formarket.standins.github`, a local server speaking the same
routes. An unanswered request and GitHub's error statuses become formarket's errors here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from formarket.errors import FormarketError, NotFoundError, UsageError
from formarket.httpclient import Client, HTTPError, Response, Transport

__all__ = ["Comment", "GitHub", "GitHubError", "Issue", "LabelEvent"]

DEFAULT_API_URL = "https://api.github.com"
REPO_SLUG = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_MAX_PAGES = 50


class GitHubError(FormarketError):
    """GitHub answered with an error, or could not be reached."""


@dataclass(frozen=True, slots=True)
class Issue:
    number: int
    title: str
    body: str
    author: str
    state: str  # open, closed
    labels: tuple[str, ...]
    created_at: str
    is_pull_request: bool = False


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    author: str
    body: str


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A label added (`labeled`) or removed (`unlabeled`), and by whom."""

    event: str
    label: str
    actor: str
    created_at: str


def _login(user: Any) -> str:
    return str(user.get("login", "")) if isinstance(user, dict) else ""


def issue_from_json(data: Any) -> Issue:
    """An issue from GitHub's JSON (an API answer or a webhook payload's `issue`)."""
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        raise GitHubError("GitHub sent an issue without a number")
    labels = tuple(
        str(label.get("name", "")) if isinstance(label, dict) else str(label)
        for label in data.get("labels") or ()
    )
    return Issue(
        number=data["number"],
        title=str(data.get("title") or ""),
        body=str(data.get("body") or ""),
        author=_login(data.get("user")),
        state=str(data.get("state") or "open"),
        labels=labels,
        created_at=str(data.get("created_at") or ""),
        is_pull_request="pull_request" in data,
    )


class GitHub:
    """Calls GitHub's REST API as one token's owner."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        token: str | None = None,
        *,
        transport: Transport | None = None,
        timeout: float = 30.0,
    ) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._http = Client(self.base_url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_env(cls) -> GitHub:
        return cls(
            os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL, os.environ.get("GITHUB_TOKEN")
        )

    def __enter__(self) -> GitHub:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, json: Any = None) -> Response:
        try:
            response = self._http.request(method, path, json=json)
        except HTTPError as exc:
            raise GitHubError(
                f"cannot reach GitHub at {self.base_url}: {exc.message}",
                hint="check GITHUB_API_URL and the network",
            ) from exc
        if response.status_code == 404:
            raise NotFoundError(f"GitHub has no {path}", hint="check the repository and number")
        if response.status_code in (401, 403):
            raise GitHubError(
                f"GitHub refused {method} {path} ({response.status_code})",
                hint="check GITHUB_TOKEN and the workflow's permissions (issues: write)",
            )
        if response.status_code >= 400:
            raise GitHubError(
                f"GitHub answered {response.status_code} to {method} {path}: {response.text[:200]}"
            )
        return response

    def _json(self, method: str, path: str, json: Any = None) -> Any:
        response = self._request(method, path, json)
        try:
            return response.json()
        except ValueError as exc:
            raise GitHubError(f"GitHub sent something other than JSON for {path}") from exc

    def _pages(self, path: str) -> list[Any]:
        items: list[Any] = []
        url: str | None = f"{path}?per_page=100"
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            response = self._request("GET", url)
            page = response.json()
            if not isinstance(page, list):
                raise GitHubError(f"GitHub sent something other than a list for {path}")
            items.extend(page)
            following = response.links.get("next", {}).get("url")
            # Only follow links to the same API: a page must not send us elsewhere.
            # (The base URL and a slash: `https://api.github.com.example/` is another host,
            # and the client would send it the token.)
            same_api = following is not None and following.startswith(self.base_url + "/")
            url = following if same_api else None
        return items

    @staticmethod
    def _issue_path(repo: str, number: int) -> str:
        if not REPO_SLUG.match(repo):
            raise UsageError(f"{repo!r} is not a repository", hint="owner/name, as on GitHub")
        return f"/repos/{repo}/issues/{int(number)}"

    def get_issue(self, repo: str, number: int) -> Issue:
        return issue_from_json(self._json("GET", self._issue_path(repo, number)))

    def comments(self, repo: str, number: int) -> list[Comment]:
        return [
            Comment(int(c.get("id", 0)), _login(c.get("user")), str(c.get("body") or ""))
            for c in self._pages(self._issue_path(repo, number) + "/comments")
            if isinstance(c, dict)
        ]

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        data = self._json("POST", self._issue_path(repo, number) + "/comments", {"body": body})
        return Comment(int(data.get("id", 0)), _login(data.get("user")), str(data.get("body")))

    def add_labels(self, repo: str, number: int, labels: list[str]) -> None:
        self._request("POST", self._issue_path(repo, number) + "/labels", {"labels": labels})

    def label_events(self, repo: str, number: int) -> list[LabelEvent]:
        """Labels added and removed, oldest first, with who did it."""
        found = []
        for event in self._pages(self._issue_path(repo, number) + "/events"):
            if not isinstance(event, dict) or event.get("event") not in ("labeled", "unlabeled"):
                continue
            label = event.get("label") or {}
            found.append(
                LabelEvent(
                    str(event["event"]),
                    str(label.get("name", "")) if isinstance(label, dict) else "",
                    _login(event.get("actor")),
                    str(event.get("created_at") or ""),
                )
            )
        return found
