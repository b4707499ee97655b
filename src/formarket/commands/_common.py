"""What several commands share: opening a repository, the cache, printing a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket.registry.cache import ResultCache, code_digest, default_cache_dir
from formarket.registry.report import FORMATS, render_findings

if TYPE_CHECKING:
    from dulwich.repo import Repo

    from formarket.registry.validate import Report

__all__ = ["FORMAT_OPTION", "echo_report", "open_cache", "open_repo"]

FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for programs, github for workflow annotations.",
)


def open_repo(path: Path | None = None) -> Repo:
    """The repository that holds `path` (default: the current folder), as git finds it."""
    # Imported here, not at the top: commands that never open git start without dulwich.
    from formarket.market.repository import open_repository

    return open_repository(path)


def open_cache(root: Path, enabled: bool, name: str) -> ResultCache:
    """The cache `name` of the repository at `root`: `worktree` for files on disk, `git` for
    commits (their keys differ, so each kind keeps its own file and never evicts the other's)."""
    return ResultCache(
        default_cache_dir(root) / f"{name}.cache" if enabled else None,
        code_digest(),
        for_command=True,
    )


def echo_report(report: Report, fmt: str, what: str) -> None:
    summary = (
        f"{what}: {report.documents} documents ({report.checked} checked, the rest"
        f" unchanged) in {report.seconds:.2f}s"
    )
    extra: dict[str, object] = {"documents": report.documents, "checked": report.checked}
    click.echo(render_findings(report.findings, fmt, summary=summary, extra=extra))
