"""`formarket login`: sign in with GitHub and keep a key of your account on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from formarket.commands._options import CONTROL_URL_OPTION

if TYPE_CHECKING:
    from formarket.accounts.github_login import DeviceCode

__all__ = ["command"]


@click.command("login")
@CONTROL_URL_OPTION
@click.option(
    "--key-name",
    default="formarket login",
    show_default=True,
    help="What to call the key this sign-in makes (`formarket keys list` shows it).",
)
def command(control_url: str, key_name: str) -> None:
    """Sign in with GitHub and keep a key of your account on this machine.

    \b
    It shows a code and an address: open the address, enter the code and approve.
    The key is kept in ~/.config/formarket/credentials.json ($XDG_CONFIG_HOME),
    readable by you only; `formarket keys` manages it and your other keys, and
    it calls your deployments through the gateway (Authorization: Bearer <key>).

    \b
    Examples:
      formarket login
      formarket login --control-url https://control.example.org
    """
    from formarket.control.client import credentials_path, sign_in

    def show(device: DeviceCode) -> None:
        click.echo(f"Open {device.verification_uri} and enter the code {device.user_code}")
        click.echo("Waiting for you to approve it ...")

    credentials = sign_in(control_url, key_name, show)
    path = credentials_path()
    credentials.save(path)
    click.echo(f"Signed in as {credentials.account}; the key is kept in {path}")
