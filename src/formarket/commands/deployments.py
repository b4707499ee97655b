"""`formarket deployments`: the deployments git wants, and how the farm last found them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, STATE_OPTION, farm_settings
from formarket.commands._remote import ModalCommand, remote, remote_deployments
from formarket.errors import FormarketError, NotFoundError, UsageError

if TYPE_CHECKING:
    from formarket.farm.settings import FarmSettings
    from formarket.schemas.deployment import Deployment

__all__ = ["command"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


def _views(
    settings: FarmSettings, shown: list[Deployment], *, ask_hosts: bool
) -> list[dict[str, Any]]:
    """Each deployment's view; with `ask_hosts`, libvirt is asked once for all of them (a
    list leaves it out: it must answer at once even when a host does not)."""
    from formarket.commands._common import open_repo
    from formarket.farm.fleet import connections
    from formarket.farm.report import look, view
    from formarket.farm.versions import versions_at

    actual = (
        look(settings, connections())
        if shown and ask_hosts
        else "not asked: `formarket deployments show ID` asks the hosts"
    )
    repo = open_repo(settings.repo)
    try:
        versions = versions_at(repo, settings.branch)
        marks = {d.listing.id: versions.marks(d.listing.id) for d in shown}
    finally:
        repo.close()
    return [view(settings, d, actual, marks[d.listing.id]) for d in shown]


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
    """The deployments in registry/deployments/ (what should run) and what actually runs.

    git holds the desired state (written by the farm's bot); libvirt on the farm's hosts holds
    the actual one. `show` gives both, apart.

    `list`, `show` and `stop` work from any machine too: signed in (`formarket login`) and
    outside a marketplace clone, they ask the control plane for your account's deployments
    (client mode); in a clone, or with --repo, they read and commit the clone (operator mode).

    \b
    Examples:
      formarket deployments list
      formarket deployments show dep-3f2a9c1b7d4e --json
      formarket deployments logs dep-3f2a9c1b7d4e
      formarket deployments upgrade dep-3f2a9c1b7d4e --to 1.1.0
      formarket deployments stop dep-3f2a9c1b7d4e --cascade
    """


@command.command("list", cls=ModalCommand)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@click.option("--all", "show_all", is_flag=True, help="Include stopped deployments.")
@click.option(
    "--account",
    metavar="LOGIN",
    default=None,
    help="Only this account's (operator mode): git names it by its pseudonym, or by its login"
    " in deployments from before pseudonyms.",
)
@_JSON
def list_(
    repo: Path,
    branch: str,
    state: Path | None,
    show_all: bool,
    account: str | None,
    as_json: bool,
) -> None:
    """One line per deployment: id, kind, listing, size, account (its pseudonym), where the
    farm has it."""
    client = remote()
    if client is not None:
        if account is not None:
            raise UsageError("--account is for operator mode, in the clone")
        remote_deployments(client, "list", None, as_json, show_all)
        return
    settings = farm_settings(repo, branch, state)
    desired, problems = _desired(settings)
    shown = [d for _id, d in sorted(desired.items()) if show_all or d.state == "running"]
    if account is not None:
        from formarket.farm.status import farm_pseudonyms

        pseudonyms = farm_pseudonyms(settings)
        shown = [d for d in shown if pseudonyms.owns(d.account, account)]
    views = _views(settings, shown, ask_hosts=False)
    if as_json:
        click.echo(json.dumps({"deployments": views, "problems": problems}, indent=2))
        return
    if not shown:
        click.echo("no deployments" + ("" if show_all else " running (--all shows stopped ones)"))
    for d, view in zip(shown, views, strict=True):
        size = f"{d.size.vcpus} vCPU {d.size.memory_mib} MiB"
        where = view["endpoint"] or view["farm"]
        click.echo(
            f"{d.id}  {d.kind:5}  {d.listing.id}@{d.listing.version}  {size}  {d.account}  {where}"
        )
        if "notice" in view:
            click.echo(f"  notice: {view['notice']}")
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


@command.command("show", cls=ModalCommand)
@click.argument("deployment_id", metavar="ID")
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@_JSON
def show(deployment_id: str, repo: Path, branch: str, state: Path | None, as_json: bool) -> None:
    """Everything about one deployment: what git wants (desired) and what the farm's hosts run
    (actual), apart; the last upgrade and its outcome; the owners' notice when its version is
    deprecated or yanked."""
    client = remote()
    if client is not None:
        remote_deployments(client, "show", deployment_id, as_json, True)
        return
    settings = farm_settings(repo, branch, state)
    desired, _problems = _desired(settings)
    deployment = desired.get(deployment_id)
    if deployment is None:
        raise NotFoundError(
            f"no deployment {deployment_id}", hint="`formarket deployments list --all` lists them"
        )
    (view,) = _views(settings, [deployment], ask_hosts=True)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    desired_, actual = view.pop("desired"), view.pop("actual")
    for key, value in view.items():
        if value not in (None, {}, [], ()):
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            click.echo(f"{key + ':':18} {text}")
    click.echo(f"{'desired:':18} {desired_['state']}, version {desired_['version']} (git)")
    click.echo(f"{'actual:':18} {actual['state']} (libvirt)")
    for vm in actual["vms"]:
        click.echo(
            f"{'':18} {vm['host']} slot {vm['slot']}: {'running' if vm['running'] else 'stopped'}"
            f" {vm['version']}, build {vm['build']}, {vm['endpoint'] or 'no port'}"
            + (f", GPUs {' '.join(vm['gpus'])}" if vm.get("gpus") else "")
        )


@command.command("stop", cls=ModalCommand)
@click.argument("deployment_id", metavar="ID")
@REPO_OPTION
@BRANCH_OPTION
@click.option(
    "--cascade",
    is_flag=True,
    help="Also stop the agent deployments that call this model (refused without it).",
)
def stop(deployment_id: str, repo: Path, branch: str, cascade: bool) -> None:
    """Mark a deployment stopped in git (committed by the bot); the farm removes its VM in
    its next reconcile cycle, and the gateway stops routing to it.

    A model that a running agent deployment calls is not stopped alone: the agent would call a
    model that is gone. --cascade stops the agents with it, in the same commit.

    \b
      formarket deployments stop dep-3f2a9c1b7d4e
      formarket deployments stop dep-3f2a9c1b7d4e --cascade
    """
    client = remote()
    if client is not None:
        remote_deployments(client, "stop", deployment_id, False, True, cascade=cascade)
        return
    from formarket.deploy.lifecycle import stop as stop_

    settings = farm_settings(repo, branch)
    stopped, commit = stop_(settings, deployment_id, cascade=cascade, echo=click.echo)
    if commit is None:
        click.echo(f"{deployment_id} was stopped already")
    else:
        click.echo(
            f"{', '.join(stopped)} stopped in git ({commit.decode()[:12]}); the farm removes"
            f" {'them' if len(stopped) > 1 else 'it'}"
        )


@command.command("upgrade", cls=ModalCommand)
@click.argument("deployment_id", metavar="ID")
@click.option(
    "--to",
    "version",
    metavar="VERSION",
    help="The version to run (default: the newest published one that is not yanked).",
)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@click.option("--dry-run", is_flag=True, help="Check and say what would change; commit nothing.")
@click.option(
    "--wait", is_flag=True, help="Follow the farm until the new version serves, or has failed."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    help="Seconds --wait waits.",
)
def upgrade(
    deployment_id: str,
    version: str | None,
    repo: Path,
    branch: str,
    state: Path | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Move a running deployment to another published version of its listing, without
    downtime.

    The bot commits the new version to the deployment's file. The farm then starts the new
    version in a second VM beside the old one, waits for its health check, moves the gateway's
    route to it and stops the old VM. If the new VM does not come up, the old one keeps
    serving and `formarket deployments show ID` says why. Agents that call an upgraded model
    reach it through the gateway, so they call the new version from then on.

    \b
      formarket deployments upgrade dep-3f2a9c1b7d4e
      formarket deployments upgrade dep-3f2a9c1b7d4e --to 1.1.0 --dry-run
      formarket deployments upgrade dep-3f2a9c1b7d4e --wait
    """
    from formarket.deploy.lifecycle import upgrade as upgrade_

    if dry_run and wait:
        raise UsageError("--wait follows a committed upgrade; leave out --dry-run")
    client = remote()
    if client is not None:
        if wait:
            raise UsageError(
                "--wait follows the farm, in the clone",
                hint=f"`formarket deployments show {deployment_id}` says how the upgrade went",
            )
        with client:
            done = client.call(
                "POST",
                f"/v1/deployments/{deployment_id}/upgrade",
                {"to": version, "dry_run": dry_run},
            )
        for warning in done["warnings"]:
            click.echo(f"Warning: {warning}")
        moved = f"{done['listing']} {done['old_version']} -> {done['new_version']}"
        if done["old_version"] == done["new_version"]:
            click.echo(f"{deployment_id} runs {done['listing']}@{done['old_version']} already")
        elif done["committed"] is None:
            click.echo(f"Dry run: {deployment_id} would move: {moved}")
        else:
            click.echo(f"{deployment_id}: {moved} committed; the farm starts it beside the old VM")
        return
    settings = farm_settings(repo, branch, state)
    done = upgrade_(settings, deployment_id, version, dry_run=dry_run)
    for warning in done.warnings:
        click.echo(f"Warning: {warning}")
    old, new = done.old.listing, done.new.listing
    if old == new:
        click.echo(f"{deployment_id} runs {old.id}@{old.version} already")
    elif done.commit is None:
        click.echo(f"Dry run: {deployment_id} would move from {old.version} to {new.version}.")
    else:
        click.echo(
            f"{deployment_id}: {old.id} {old.version} -> {new.version} committed"
            f" ({done.commit.decode()[:12]}); the farm starts it beside the old VM"
        )
    if wait and done.commit is not None:
        _follow_upgrade(settings, deployment_id, new.version, timeout)


def _follow_upgrade(
    settings: FarmSettings, deployment_id: str, version: str, timeout: float
) -> None:
    from formarket.farm import status, upgrades

    deadline = time.monotonic() + timeout
    said = ""
    while True:
        last = upgrades.load(settings.state).get(deployment_id)
        if last is not None and last.new == version and last.outcome == "done":
            where = status.endpoint(settings, deployment_id) or "(no port)"
            click.echo(f"{deployment_id} serves {version} at {where}")
            return
        if last is not None and last.new == version:
            raise FormarketError(
                f"{deployment_id} could not start {version}: {last.reason}",
                hint=f"{last.old} serves on; `formarket deployments upgrade {deployment_id}`"
                " tries again",
            )
        now = status.progress(settings, deployment_id)
        if now != said:
            click.echo(f"  {now}")
            said = now
        if time.monotonic() > deadline:
            raise FormarketError(
                f"{deployment_id} was not upgraded within {timeout:.0f}s (last: {now})",
                hint="is the farm running? `formarket deployments show` follows it",
            )
        time.sleep(1.0)


@command.command("logs")
@click.argument("deployment_id", metavar="ID")
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
def logs(deployment_id: str, repo: Path, branch: str, state: Path | None) -> None:
    """The serial console of the deployment's VM (its boot) and its service's log (what the
    service wrote after boot), read from the host over libvirt.

    \b
      formarket deployments logs dep-3f2a9c1b7d4e
    """
    from formarket.farm.fleet import connections
    from formarket.farm.report import consoles

    settings = farm_settings(repo, branch, state)
    found = consoles(settings, deployment_id, connections())
    if not found:
        click.echo(f"{deployment_id} has no VM on the farm's hosts")
    for console in found:
        what = "running" if console.running else "stopped"
        click.echo(f"== {deployment_id} on {console.host}, slot {console.slot} ({what})")
        click.echo("-- serial console (boot)")
        click.echo(console.boot.rstrip() or "(nothing yet)")
        click.echo("-- service")
        click.echo(console.service.rstrip() or "(nothing yet)")
