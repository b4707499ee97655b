"""`formarket invoices`: your account's invoices, through the control plane."""

from __future__ import annotations

import json
from pathlib import Path

import click

from formarket.commands._options import BRANCH_OPTION, CONTROL_URL_OPTION, REPO_OPTION
from formarket.errors import UsageError

__all__ = ["command"]

# An invoice has a line per listing version and metric its account used in a month: a few
# hundred bytes each. Anything larger than this is not one, and is not read whole.
_LARGEST_INVOICE = 256 << 20


@click.group("invoices")
def command() -> None:
    """Your account's invoices, one per closed period (sign in first with `formarket login`).

    \b
    An invoice is yours alone: the lines of your usage per listing version, your
    top-ups, subscription charges and balance by the books. The close of each
    period commits every invoice's SHA-256 to the marketplace's repository
    (royalties/YYYY-MM/invoices.json), so that the file you get can be checked
    against the public record without telling anyone whose it is.

    \b
    Examples:
      formarket invoices list
      formarket invoices get 2026-03 -o invoice-2026-03.json
      formarket invoices verify 2026-03 invoice-2026-03.json --repo marketplace/
    """


@command.command("list")
@CONTROL_URL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def list_(control_url: str, as_json: bool) -> None:
    """Your invoices, newest first: period, usage per currency, closing balance, SHA-256."""
    from formarket.commands._remote import account_client

    with account_client(control_url) as control:
        invoices = control.invoices()
    if as_json:
        click.echo(json.dumps({"invoices": invoices}, indent=2))
        return
    for invoice in invoices:
        usage = ", ".join(f"{t['currency']} {t['amount']}" for t in invoice["totals"]) or "none"
        click.echo(
            f"{invoice['period']}  usage {usage}  closing balance {invoice['currency']}"
            f" {invoice['closing_balance']}  sha256 {invoice['sha256']}"
        )
    if not invoices:
        click.echo("no invoices yet: a period's invoices are written when it is closed")


@command.command("get")
@CONTROL_URL_OPTION
@click.argument("period")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Save it to this file (default: print it).",
)
def get(control_url: str, period: str, output: Path | None) -> None:
    """The invoice of PERIOD (YYYY-MM), as the exact bytes whose SHA-256 its close
    committed."""
    import hashlib
    import re

    from formarket.atomicfile import write_atomically
    from formarket.commands._remote import account_client
    from formarket.schemas.usage import PERIOD_PATTERN

    if not re.fullmatch(PERIOD_PATTERN, period):  # the whole of it: no final newline either
        raise UsageError(f"{period!r} is not a period", hint="write the month as YYYY-MM")
    with account_client(control_url) as control:
        body = control.invoice(period)
    if output is None:
        click.echo(body, nl=False)  # bytes: written as they are
        return
    write_atomically(output, body)
    click.echo(f"saved {output} (sha256 {hashlib.sha256(body).hexdigest()})", err=True)


@command.command("verify")
@click.argument("period")
@click.argument("invoice", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@REPO_OPTION
@BRANCH_OPTION
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes to read usage with (default: one per core).",
)
def verify(period: str, invoice: Path, repo: Path, branch: str, jobs: int | None) -> None:
    """Check your invoice of PERIOD against the public record, on a clone of the marketplace.

    \b
    Its usage lines are recomputed from the usage committed to git under your account's
    pseudonym (the name the invoice gives), split as the close split every line among the
    accounts that used it; the top-ups, charges and balance carried are taken from the file
    itself. The file must then be byte for byte what the recomputation gives, and its
    SHA-256 one of those the period's close committed (royalties/YYYY-MM/invoices.json).
    Nothing is sent anywhere: no one learns which invoice is yours.

    \b
    Exit status: 0 it checks out, 1 a problem (each is printed), 2 bad usage.
    """
    from formarket.commands._common import open_repo
    from formarket.royalties.invoice_check import check_invoice

    size = invoice.stat().st_size
    if size > _LARGEST_INVOICE:
        raise UsageError(
            f"{invoice} is {size:,} bytes: no invoice is that large",
            hint="give the file `formarket invoices get` saved, unchanged",
        )
    data = invoice.read_bytes()
    repository = open_repo(repo)
    try:
        checked = check_invoice(repository, period, data, branch=branch, jobs=jobs)
    finally:
        repository.close()
    if checked.problems:
        for problem in checked.problems:
            click.echo(f"{invoice}: {problem}", err=True)
        raise SystemExit(1)
    click.echo(
        f"{invoice}: the invoice of {checked.invoice.account} for {period} checks out: its lines"
        f" are recomputed from the public usage byte for byte, and its SHA-256"
        f" {checked.sha256} is in royalties/{period}/invoices.json"
    )
