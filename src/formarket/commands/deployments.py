"""`formarket deployments`: the deployments git wants, and how the farm last found them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, STATE_OPTION, farm_settings
from formarket.errors import NotFoundError

if TYPE_CHECKING:
    from formarket.farm.settings import FarmSettings
    from formarket.schemas.deployment import Deployment

__all__ = ["command"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


def _view(settings: FarmSettings, deployment: Deployment) -> dict[str, Any]:
    from formarket.farm.status import endpoint, progress

    return {
        **deployment.model_dump(mode="json"),
        "endpoint": endpoint(settings, deployment.id),
        "farm": progress(settings, deployment.id) if deployment.state == "running" else "stopped",
    }


def _desired(settings: FarmSettings) -> tuple[dict[str, Deployment], list[str]]:
    from formarket.commands._common import open_repo
    from formarket.farm.desired import read_deployments

    repo = open_repo(settings.repo)
    problems: list[str] = []
    try:
        return read_deployments(repo, settings.branch, problems=problems), problems
    finally:
        repo.close()


@click.group("deployments")
def command() -> None:
    """The deployments in registry/deployments/ (what should run) and what the farm last saw.

    \b
    Examples:
      formarket deployments list
      formarket deployments show dep-3f2a9c1b7d4e --json
      formarket deployments stop dep-3f2a9c1b7d4e
    """


@command.command("list")
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@click.option("--all", "show_all", is_flag=True, help="Include stopped deployments.")
@_JSON
def list_(repo: Path, branch: str, state: Path | None, show_all: bool, as_json: bool) -> None:
    """One line per deployment: id, kind, listing, size, account, where the farm has it."""
    settings = farm_settings(repo, branch, state)
    desired, problems = _desired(settings)
    shown = [d for _id, d in sorted(desired.items()) if show_all or d.state == "running"]
    if as_json:
        views = [_view(settings, d) for d in shown]
        click.echo(json.dumps({"deployments": views, "problems": problems}, indent=2))
        return
    if not shown:
        click.echo("no deployments" + ("" if show_all else " running (--all shows stopped ones)"))
    for d in shown:
        view = _view(settings, d)
        size = f"{d.size.vcpus} vCPU {d.size.memory_mib} MiB"
        where = view["endpoint"] or view["farm"]
        click.echo(
            f"{d.id}  {d.kind:5}  {d.listing.id}@{d.listing.version}  {size}  {d.account}  {where}"
        )
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


@command.command("show")
@click.argument("deployment_id", metavar="ID")
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@_JSON
def show(deployment_id: str, repo: Path, branch: str, state: Path | None, as_json: bool) -> None:
    """Everything about one deployment."""
    settings = farm_settings(repo, branch, state)
    desired, _problems = _desired(settings)
    deployment = desired.get(deployment_id)
    if deployment is None:
        raise NotFoundError(
            f"no deployment {deployment_id}", hint="`formarket deployments list --all` lists them"
        )
    view = _view(settings, deployment)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    for key, value in view.items():
        if value not in (None, {}, [], ()):
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            click.echo(f"{key + ':':18} {text}")


@command.command("stop")
@click.argument("deployment_id", metavar="ID")
@REPO_OPTION
@BRANCH_OPTION
def stop(deployment_id: str, repo: Path, branch: str) -> None:
    """Mark a deployment stopped in git (committed by the bot); the farm removes its VM in
    its next reconcile cycle, and the gateway stops routing to it."""
    from formarket.commands._common import open_repo
    from formarket.farm.desired import set_state
    from formarket.market.governance import bot_identity

    settings = farm_settings(repo, branch)
    git = open_repo(settings.repo)
    try:
        commit = set_state(
            git,
            settings.branch,
            deployment_id,
            "stopped",
            f"Stop deployment {deployment_id}",
            bot_identity(git, settings.branch),
        )
    finally:
        git.close()
    if commit is None:
        click.echo(f"{deployment_id} was stopped already")
    else:
        click.echo(f"{deployment_id} stopped in git ({commit.decode()[:12]}); the farm removes it")
