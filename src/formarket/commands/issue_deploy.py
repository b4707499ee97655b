"""`formarket issue-deploy`: act on a deployment issue's webhook payload (in GitHub Actions)."""

from __future__ import annotations

from pathlib import Path

import click

from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, farm_settings

__all__ = ["command"]


@click.command("issue-deploy")
@click.option(
    "--event",
    "event_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The webhook payload file ($GITHUB_EVENT_PATH in a workflow).",
)
@click.option(
    "--repo-slug",
    default=None,
    metavar="OWNER/NAME",
    help="The GitHub repository (default: the payload's).",
)
@REPO_OPTION
@BRANCH_OPTION
def command(event_path: Path, repo_slug: str | None, repo: Path, branch: str) -> None:
    """Deploy what a deployment issue asks for, stop it when the issue is closed, and answer
    on the issue. GitHub is reached at GITHUB_API_URL with GITHUB_TOKEN; the marketplace
    repository is --repo (FORMARKET_REPO) on --branch (FORMARKET_BRANCH).

    The issue's text is only ever read as data: it is re-read from the API, parsed strictly
    and checked in full before anything is committed.
    """
    from formarket.deploy.issue_flow import handle_event
    from formarket.github import GitHub

    settings = farm_settings(repo, branch)
    with GitHub.from_env() as github:
        outcome = handle_event(event_path, settings, github, repo_slug=repo_slug)
    issue = f"issue #{outcome.issue}" if outcome.issue else "the event"
    if outcome.action == "ignored":
        click.echo(f"{issue}: nothing to do ({outcome.note})")
    elif outcome.action == "refused":
        click.echo(f"{issue}: refused, nothing committed:")
        for reason in outcome.reasons:
            click.echo(f"  - {reason}")
    else:
        click.echo(f"{issue}: {outcome.action} {', '.join(outcome.deployment_ids)}")
