"""`formarket keys`: your account's API keys, through the control plane."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from formarket.commands._options import CONTROL_URL_OPTION

if TYPE_CHECKING:
    from formarket.control.client import ControlClient

__all__ = ["command"]


@click.group("keys")
def command() -> None:
    """Your account's API keys (sign in first with `formarket login`).

    \b
    A key calls your deployments through the gateway. It may be scoped to one
    deployment and may expire; a revoked key is refused at once everywhere.
    Only a key's last four characters are ever shown again.

    \b
    Examples:
      formarket keys create --name ci --deployment dep-3f2a9c1b7d4e --expires-in 30
      formarket keys list
      formarket keys revoke 0123456789ab
    """


def _client(control_url: str) -> ControlClient:
    """A client with this machine's key, to the control plane the key came from unless
    --control-url (or its variable) names another."""
    from formarket.control.client import ControlClient, Credentials, credentials_path

    credentials = Credentials.load(credentials_path())
    source = click.get_current_context().get_parameter_source("control_url")
    default = source is click.core.ParameterSource.DEFAULT
    return ControlClient(credentials.control_url if default else control_url, credentials.key)


@command.command("create")
@CONTROL_URL_OPTION
@click.option("--name", default="", help="What to call it.")
@click.option("--deployment", default=None, metavar="ID", help="Only this deployment of yours.")
@click.option(
    "--expires-in",
    type=click.IntRange(1, 3650),
    default=None,
    metavar="DAYS",
    help="It stops working after this many days (default never).",
)
def create(control_url: str, name: str, deployment: str | None, expires_in: int | None) -> None:
    """Make a key; it is printed once, never again."""
    expires = (
        (datetime.now(UTC) + timedelta(days=expires_in)).isoformat()
        if expires_in is not None
        else None
    )
    with _client(control_url) as control:
        made = control.create_key(name, deployment, expires)
    click.echo(made["key"])
    click.echo(f"key {made['details']['id']}: keep it now, it is not shown again", err=True)


@command.command("list")
@CONTROL_URL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def list_(control_url: str, as_json: bool) -> None:
    """Your keys: id, the last four characters, name, scope, expiry, whether revoked."""
    with _client(control_url) as control:
        keys = control.keys()
    if as_json:
        click.echo(json.dumps({"keys": keys}, indent=2))
        return
    for key in keys:
        state = "revoked" if key["revoked_at"] else "active"
        scope = key["deployment"] or "all deployments"
        expires = key["expires_at"] or "never"
        click.echo(
            f"{key['id']}  {key['shown']}  {state:7}  {scope}  expires {expires}  {key['name']}"
        )
    if not keys:
        click.echo("no keys")


@command.command("revoke")
@CONTROL_URL_OPTION
@click.argument("key_id", metavar="ID")
def revoke(control_url: str, key_id: str) -> None:
    """Revoke a key: every gateway refuses it from its next call on."""
    with _client(control_url) as control:
        control.revoke_key(key_id)
    click.echo(f"key {key_id} revoked")
