"""`formarket validate`: check a whole registry working tree."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from formarket.commands._common import FORMAT_OPTION, echo_report, open_cache
from formarket.errors import NotFoundError
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot

__all__ = ["command"]


@click.command("validate")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), required=False)
@FORMAT_OPTION
@click.option(
    "--no-cache",
    is_flag=True,
    help="Check every document again, ignoring results kept from earlier runs.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes to check with (default: one per core).",
)
def command(path: Path | None, fmt: str, no_cache: bool, jobs: int | None) -> None:
    """Check a registry working tree: every listing, publisher and solution, and the rules
    that span them (unique ids, references, compatibility, look-alike names).

    PATH is the marketplace repository's top folder (the one holding registry/ and
    schemas/); the default is the top of the git repository that holds the current folder
    (so it runs from inside a listing's folder too), else the current folder. Results of
    unchanged documents are reused from earlier runs, so checking again after a small edit
    is quick.

    \b
    Exit status: 0 no errors (warnings allowed), 1 errors, 2 bad usage.
    Example:     formarket validate . --format github
    """
    if path is None:
        path = _top_of_current()
    if not (path / "registry").is_dir():
        raise NotFoundError(
            f"{path} has no registry/ folder",
            hint="run it in the marketplace repository, or pass its path",
        )
    report = validate_snapshot(
        WorkTreeSnapshot(path), open_cache(path, not no_cache, "worktree"), jobs=jobs
    )
    echo_report(report, fmt, "validated")
    sys.exit(1 if report.errors else 0)


def _top_of_current() -> Path:
    """The working tree's top folder of the repository holding the current folder; the
    current folder itself when none does (a registry that is not a clone)."""
    from formarket.market.discovery import find_repository

    try:
        return find_repository()
    except NotFoundError:
        return Path(".")
