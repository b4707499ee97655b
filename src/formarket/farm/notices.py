"""Telling the users of running deployments that their version was deprecated or yanked.

A listing's owners mark a published version by pull request (`version_marks`); a yanked version
takes no new deployments, and those already running keep running, but their users must hear of
it. `formarket deployments list` and `show` print the owners' notice; a deployment asked for by
an issue also gets one comment on that issue per mark, with the owners' message and the command
that moves it to another version. What was told is remembered in the farm's state folder
(`notices-told.json`), so each mark is told once; a comment that fails is tried next cycle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.farm.notify import Commenter
from formarket.schemas.deployment import Deployment
from formarket.schemas.listing import VersionMark

__all__ = ["mark_comment", "tell_marked_issues"]

_log = logging.getLogger("formarket.farm")
_FILE = "notices-told.json"


def mark_comment(deployments: list[Deployment], mark: VersionMark) -> str:
    """The comment: which deployments run the marked version, the owners' word, what to do."""
    first = deployments[0].listing
    lines = [
        "<!-- formarket-farm -->",
        f"**{first.id}@{first.version} is {mark.status}** by its owners: {mark.message}",
        "",
    ]
    if mark.status == "yanked":
        lines.append("It takes no new deployments; these keep running until you move or stop them:")
    else:
        lines.append("It still runs; its owners advise moving on:")
    lines += [f"- `{d.id}`" for d in deployments]
    lines += [
        "",
        "Move one to the newest version that is not yanked, without downtime:",
        "",
        "```sh",
        *(f"formarket deployments upgrade {d.id}" for d in deployments),
        "```",
    ]
    return "\n".join(lines)


def _load(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return set()
    return {k for k in data if isinstance(k, str)} if isinstance(data, list) else set()


def tell_marked_issues(
    state: Path,
    desired: Mapping[str, Deployment],
    marks_of: Callable[[str], Mapping[str, VersionMark]],
    repo_slug: str,
    github: Callable[[], Commenter],
) -> list[int]:
    """Comment on each issue with running deployments of a marked version, once per mark;
    the issues told."""
    waiting: dict[tuple[int, str], tuple[list[Deployment], VersionMark]] = {}
    marks: dict[str, Mapping[str, VersionMark]] = {}
    for d in sorted(desired.values(), key=lambda d: d.id):
        if d.state != "running" or d.origin.kind != "issue" or not d.origin.issue:
            continue
        if d.listing.id not in marks:
            marks[d.listing.id] = marks_of(d.listing.id)
        mark = marks[d.listing.id].get(d.listing.version)
        if mark is None:
            continue
        told_key = f"{d.origin.issue} {d.listing.id}@{d.listing.version} {mark.status}"
        waiting.setdefault((d.origin.issue, told_key), ([], mark))[0].append(d)
    path = state / _FILE
    told = _load(path)
    todo = {k: v for k, v in waiting.items() if k[1] not in told}
    if not todo:
        return []
    client = github()
    done: list[str] = []
    issues: list[int] = []
    try:
        for (number, key), (deployments, mark) in sorted(todo.items()):
            try:
                client.create_comment(repo_slug, number, mark_comment(deployments, mark))
            except FormarketError as exc:
                _log.warning("could not comment on issue #%d: %s", number, exc)
                continue
            done.append(key)
            issues.append(number)
    finally:
        client.close()
    write_atomically(path, json.dumps(sorted(told | set(done))).encode())
    return sorted(set(issues))
