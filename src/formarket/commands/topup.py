"""`formarket topup AMOUNT`: buy prepaid credit, through the control plane."""

from __future__ import annotations

import re

import click

from formarket.commands._options import CONTROL_URL_OPTION
from formarket.errors import UsageError

__all__ = ["command"]

_AMOUNT = re.compile(r"[0-9]{1,5}(\.[0-9]{1,2})?")


@click.command("topup")
@CONTROL_URL_OPTION
@click.argument("amount")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def command(control_url: str, amount: str, as_json: bool) -> None:
    """Buy AMOUNT of prepaid credit, such as 10.00 (sign in first with `formarket login`).

    \b
    It opens a checkout at the payment provider and prints its address: pay
    there, and the balance grows once the provider confirms the payment
    (`formarket balance` shows it).
    """
    import json

    from formarket.commands._remote import account_client

    if not _AMOUNT.fullmatch(amount):
        raise UsageError(f"{amount!r} is not an amount", hint="such as 10 or 10.00")
    with account_client(control_url) as control:
        made = control.top_up(_cents(amount))
    if as_json:
        click.echo(json.dumps(made, indent=2))
        return
    click.echo(f"Pay {made['currency']} {made['amount']} here: {made['url']}")
    click.echo("Your balance grows once the payment goes through (`formarket balance`).")


def _cents(amount: str) -> str:
    whole, _, cents = amount.partition(".")
    return f"{int(whole)}.{cents.ljust(2, '0')}"
