"""`formarket subscriptions`: your subscriptions to listings sold by subscription, through the
control plane."""

from __future__ import annotations

import json
from typing import Any

import click

from formarket.commands._options import CONTROL_URL_OPTION

__all__ = ["command"]


@click.group("subscriptions")
def command() -> None:
    """Your subscriptions to listings sold by subscription (sign in first with
    `formarket login`).

    \b
    A subscription to a tier is paid from your prepaid balance, a month at a time: the
    first month when you subscribe, each next one when it starts. Your calls to the
    listing draw on the tier's included requests and tokens first, at no cost; beyond
    them each request costs the tier's overage price, or is refused when the tier sells
    no more. Without a subscription, calls to a listing sold by subscription are refused.

    \b
    Examples:
      formarket subscriptions add lumen-labs/sketch-turbo Hobby
      formarket subscriptions list
      formarket subscriptions cancel sub_0123456789abcdef01234567
    """


def _show(sub: dict[str, Any]) -> str:
    def of(included: int | None, used: int, held: int) -> str:
        if included is None:
            return "unlimited"
        return f"{used + held:,} of {included:,} used or in use"

    overage = sub.get("overage_per_request")
    beyond = f"{overage} {sub['currency']} a request" if overage else "refused"
    requests = of(sub["included_requests"], sub["used_requests"], sub["held_requests"])
    tokens = of(sub["included_tokens"], sub["used_tokens"], sub["held_tokens"])
    return (
        f"{sub['id']}  {sub['listing']} {sub['tier']}  {sub['state']}  {sub['price']}"
        f" {sub['currency']} a month, renews {sub['period_end'][:10]}\n"
        f"  this month: requests {requests}; tokens {tokens}; beyond: {beyond}"
    )


@command.command("list")
@CONTROL_URL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def list_(control_url: str, as_json: bool) -> None:
    """Your subscriptions, with this month's included usage used."""
    from formarket.commands._remote import account_client

    with account_client(control_url) as control:
        subscriptions = control.subscriptions()
    if as_json:
        click.echo(json.dumps({"subscriptions": subscriptions}, indent=2))
        return
    for sub in subscriptions:
        click.echo(_show(sub))
    if not subscriptions:
        click.echo("no subscriptions: `formarket subscriptions add LISTING TIER` makes one")


@command.command("add")
@CONTROL_URL_OPTION
@click.argument("listing")
@click.argument("tier")
def add(control_url: str, listing: str, tier: str) -> None:
    """Subscribe to TIER of LISTING (its id, such as lumen-labs/sketch-turbo); its first month
    is paid from your balance now (`formarket topup AMOUNT` adds to it)."""
    from formarket.commands._remote import account_client

    with account_client(control_url) as control:
        made = control.subscribe(listing, tier)
    click.echo(_show(made))


@command.command("cancel")
@CONTROL_URL_OPTION
@click.argument("subscription_id")
def cancel(control_url: str, subscription_id: str) -> None:
    """Stop SUBSCRIPTION_ID's renewals: the month paid for runs to its end."""
    from formarket.commands._remote import account_client

    with account_client(control_url) as control:
        cancelled = control.cancel_subscription(subscription_id)
    click.echo(_show(cancelled))
