"""Telling a deployment issue that what it asked for answers now, with how to call it.

The issue's workflow commits the request and ends; the farm, which sees the VMs come up, posts
the second comment: once every deployment of the issue is routed, one comment per issue with
each deployment's id (the `model` a caller names at the gateway) and an example call. The
issues told are remembered in the farm's state folder, so a comment is posted once; a failure
to post is retried by the next cycle.

Configured by FORMARKET_GITHUB_REPO (owner/name; unset: no comments), GITHUB_TOKEN,
GITHUB_API_URL and FORMARKET_GATEWAY_URL (what callers use), read through formarket.settings.
The comment's example call names FORMARKET_KEY, a shell variable the reader sets to their key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.schemas.deployment import Deployment
from formarket.settings import GATEWAY_URL

__all__ = ["Commenter", "ready_comment", "tell_ready_issues"]

_log = logging.getLogger("formarket.farm")
DEFAULT_GATEWAY_URL = GATEWAY_URL.fallback


class Commenter(Protocol):
    def create_comment(self, repo: str, number: int, body: str) -> object: ...

    def close(self) -> None: ...


def ready_comment(deployments: list[Deployment], gateway_url: str) -> str:
    """The comment: what runs, and a call through the gateway (the VMs themselves are not
    for callers: only the gateway meters)."""
    lines = ["<!-- formarket-farm -->", "**Running.** Call it through the gateway:", ""]
    for d in sorted(deployments, key=lambda d: (d.kind != "agent", d.id)):
        lines.append(f"- `{d.id}`: {d.kind} {d.listing.id}@{d.listing.version}")
    first = min(deployments, key=lambda d: (d.kind != "agent", d.id))
    body = {"model": first.id, "messages": [{"role": "user", "content": "Hello"}]}
    lines += [
        "",
        "```sh",
        f"curl -s {gateway_url}/v1/chat/completions \\",
        '  -H "Authorization: Bearer $FORMARKET_KEY" -H "Content-Type: application/json" \\',
        f"  -d '{json.dumps(body)}'",
        "```",
        "",
        "`FORMARKET_KEY` is a key of your account: `formarket login` signs you in with GitHub"
        " and keeps one, `formarket keys create` makes more.",
        "",
        "Closing this issue stops it.",
    ]
    return "\n".join(lines)


def _load(path: Path) -> set[int]:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return set()
    return {n for n in data if isinstance(n, int)} if isinstance(data, list) else set()


def _save(path: Path, told: set[int]) -> None:
    write_atomically(path, json.dumps(sorted(told)).encode())


def tell_ready_issues(
    state: Path,
    desired: Mapping[str, Deployment],
    routed: set[str],
    repo_slug: str,
    github: Callable[[], Commenter],
    gateway_url: str = DEFAULT_GATEWAY_URL,
) -> list[int]:
    """Post the comment on each issue whose deployments all run now; the issues told."""
    by_issue: dict[int, list[Deployment]] = {}
    for d in desired.values():
        if d.state == "running" and d.origin.kind == "issue" and d.origin.issue:
            by_issue.setdefault(d.origin.issue, []).append(d)
    path = state / "issues-told.json"
    told = _load(path)
    ready = [
        n
        for n, deps in sorted(by_issue.items())
        if n not in told and all(d.id in routed for d in deps)
    ]
    if not ready:
        return []
    client = github()
    done: list[int] = []
    try:
        for number in ready:
            body = ready_comment(by_issue[number], gateway_url)
            try:
                client.create_comment(repo_slug, number, body)
            except FormarketError as exc:
                _log.warning("could not comment on issue #%d: %s", number, exc)
                continue
            done.append(number)
    finally:
        client.close()
    _save(path, told | set(done))
    return done
