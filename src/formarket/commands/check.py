"""`formarket check`: the pull-request check between two commits."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from formarket.commands._common import FORMAT_OPTION, echo_report, open_cache, open_repo
from formarket.commands._options import REPO_OPTION
from formarket.registry.pr_check import check_pull_request

__all__ = ["command"]


@click.command("check")
@REPO_OPTION
@click.option(
    "--base",
    required=True,
    help="The commit the pull request starts from"
    " (for example origin/main, or the base sha GitHub gives).",
)
@click.option("--head", required=True, help="The pull request's last commit.")
@click.option("--author", required=True, help="The GitHub login that opened the pull request.")
@click.option(
    "--maintainer",
    "maintainers",
    multiple=True,
    help="A maintainer's login, in addition to registry/governance.yaml; repeatable.",
)
@click.option("--bot", default=None, help="The farm's bot login (default: governance.yaml).")
@FORMAT_OPTION
@click.option("--no-cache", is_flag=True, help="Ignore results kept from earlier runs.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes to check with (default: one per core).",
)
def command(
    repo: Path,
    base: str,
    head: str,
    author: str,
    maintainers: tuple[str, ...],
    bot: str | None,
    fmt: str,
    no_cache: bool,
    jobs: int | None,
) -> None:
    """Check a pull request: the documents it changes, the rules that span the registry,
    who may change what, and that no published version is rewritten.

    Owners mark published versions deprecated or yanked under `version_marks` in the
    current listing.yaml; that is no rewrite. Every solution and agent that names a changed
    listing is checked again at the versions it would deploy: a pin on a yanked version is
    an error (REG031), a newer version that fits is a warning to its publisher (REG033).

    Ownership comes from the BASE commit: registry/publishers/<p>.yaml lists the logins
    that own publisher p; registry/governance.yaml names the maintainers and the bot.
    Nothing is checked out: both commits are read from git objects.

    \b
    Exit status: 0 no errors, 1 errors, 2 bad usage.
    Example:     formarket check --base origin/main --head HEAD --author octocat --format github
    """
    repository = open_repo(repo)
    try:
        report = check_pull_request(
            repository,
            base,
            head,
            author,
            open_cache(Path(repository.path), not no_cache, "git"),
            maintainers=frozenset(maintainers),
            bot=bot,
            jobs=jobs,
        )
    finally:
        repository.close()
    echo_report(report, fmt, f"checked {base}..{head} by {author}")
    sys.exit(1 if report.errors else 0)
