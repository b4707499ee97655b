"""`formarket logout`: revoke this machine's key and forget it."""

from __future__ import annotations

import click

from formarket.commands._options import CONTROL_URL_OPTION

__all__ = ["command"]


def _where(given: str, kept: str) -> str:
    """The control plane the key came from, unless --control-url (or its variable) says."""
    source = click.get_current_context().get_parameter_source("control_url")
    return kept if source is click.core.ParameterSource.DEFAULT else given


@click.command("logout")
@CONTROL_URL_OPTION
def command(control_url: str) -> None:
    """Revoke this machine's key and forget it.

    \b
    Example:
      formarket logout
    """
    from formarket.control.client import ControlClient, Credentials, credentials_path
    from formarket.errors import FormarketError

    path = credentials_path()
    credentials = Credentials.load(path)
    where = _where(control_url, credentials.control_url)
    try:
        with ControlClient(where, credentials.key) as control:
            control.revoke_key(credentials.key_id)
    except FormarketError as exc:
        # The key is forgotten here either way; say that the control plane may still know it.
        click.echo(f"warning: the key was not revoked: {exc.message}", err=True)
    path.unlink()
    click.echo(f"Signed out of {credentials.account}; {path} is removed")
