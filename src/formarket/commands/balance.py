"""`formarket balance`: your account's prepaid credit, through the control plane."""

from __future__ import annotations

import json
from decimal import Decimal

import click

from formarket.commands._options import CONTROL_URL_OPTION

__all__ = ["command"]


@click.command("balance")
@CONTROL_URL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def command(control_url: str, as_json: bool) -> None:
    """Your prepaid credit and your top-ups (sign in first with `formarket login`).

    \b
    Calls to priced deployments draw on it: each holds the most it can cost
    while it runs, and a call the balance cannot cover is refused
    (insufficient_quota). Deployments priced by the hour draw their running
    time on it; at zero they stop after the grace of the platform's terms,
    and a notice here says when. `formarket topup AMOUNT` buys more.
    """
    from formarket.commands._remote import account_client

    with account_client(control_url) as control:
        shown = control.balance()
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    currency = shown["currency"]
    click.echo(f"balance: {currency} {shown['balance']}")
    if Decimal(shown["held"]) > 0:
        click.echo(f"  of it held for calls in progress: {currency} {shown['held']}")
    click.echo(
        f"  credited in all: {currency} {shown['credited']}; spent: {currency} {shown['spent']}"
    )
    if shown.get("notice"):
        # Out of credit: the farm stops the deployments priced by the hour at `stops_at`.
        click.echo(f"notice: {shown['notice']}")
    for topup in shown["topups"]:
        click.echo(
            f"{topup['created_at'][:19]}  {topup['currency']} {topup['amount']:>10}"
            f"  {topup['state']:8}  {topup['id']}"
        )
