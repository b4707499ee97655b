"""The royalties step of `formarket demo`: the month's metered usage in, a closed period
out, verified; the accounts' invoices kept, one of them shown and verified by its account."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from dulwich.repo import Repo

from formarket.accounts.invoices import InvoiceStore
from formarket.accounts.pseudonym import Pseudonyms
from formarket.control.invoicing import AccountInvoicing, keep
from formarket.errors import FormarketError
from formarket.market.refs import branch_tip
from formarket.market.repository import open_repository
from formarket.market.trees import commit_tree, read_path
from formarket.royalties import engine
from formarket.royalties.close import Closing
from formarket.royalties.invoice_check import check_invoice
from formarket.schemas.invoices import Invoice
from formarket.schemas.usage import money_text
from formarket.usage.files import month_text

__all__ = ["credited_requests", "demo_close", "demo_invoice"]

Echo = Callable[[str], None]


def demo_close(
    repo: Repo, echo: Echo, *, now: datetime, invoices: InvoiceStore, pseudonyms: Pseudonyms
) -> tuple[str, engine.Computed]:
    """Close the month before `now` from the usage metered into git with the accounts'
    invoices, show a statement and verify the close; returns the period and the close."""
    month = now.year * 12 + now.month - 1
    period = month_text(month - 1)
    echo(f"-- formarket royalties close --period {period} --commit  (as on {now:%Y-%m-%d})")
    computed, new = engine.close(
        repo, period, commit=True, now=now, invoicing=AccountInvoicing(invoices, pseudonyms)
    )
    if new is None:
        raise FormarketError(f"royalties/{period}/ was not committed")
    keep(invoices, period, computed.closing.invoices)
    echo(computed.files["README.md"].decode().rstrip())
    charged = [s for s in computed.closing.statements if s.currencies]
    for statement in charged:
        echo(f"\n-- royalties/{period}/statements/{statement.publisher}.md")
        echo(computed.files[f"statements/{statement.publisher}.md"].decode().rstrip())
    payouts = computed.files.get("payouts.json", b"").decode()
    echo(f"\n-- royalties/{period}/payouts.json\n{payouts.rstrip()}")
    echo(f"\n-- formarket royalties verify --period {period}")
    differences = engine.verify(repo, period)
    if differences:
        raise FormarketError(f"the close of {period} does not verify: {differences[0].problem}")
    echo(f"royalties/{period}/ agrees with its recomputation from git, byte for byte")
    return period, computed


def demo_invoice(
    repo: Repo,
    echo: Echo,
    invoices: InvoiceStore,
    balance: Decimal,
    login: str,
    period: str,
    close: Closing,
) -> str:
    """Show `login`'s invoice of `period`, check that the invoices, the statements and the
    payouts agree, and verify the invoice as its account would; a summary line."""
    body = invoices.body(login, period)
    if body is None:
        raise FormarketError(f"{login} has no invoice of {period}")
    invoice = Invoice.model_validate_json(body)
    echo(f"-- formarket invoices get {period}  (as {login}: private, from the control plane)")
    for section in invoice.currencies:
        for line in section.lines:
            echo(
                f"  {line.listing}@{line.version} {line.metric}: {line.quantity} x"
                f" {line.unit_price} {section.currency} per {line.price_unit} = {line.amount}"
            )
    b = invoice.balance
    echo(
        f"  balance ({b.currency}): opening {b.opening} + top-ups {b.top_ups} - usage {b.usage}"
        f" - charges {b.charges} = closing {b.closing}"
    )
    # Reconciled: the running balance the gateway kept, against the books the close computed.
    if balance != b.closing:
        raise FormarketError(
            f"{login}'s balance is {balance} in the accounts database, {b.closing} by the books"
        )
    echo(
        f"  reconciled: the accounts database holds {money_text(balance.normalize())}"
        f" {b.currency}, as the books say"
    )
    billed: dict[str, Decimal] = {}
    for other in close.invoices:
        for currency, total in other.totals:
            billed[currency] = billed.get(currency, Decimal(0)) + total
    gross = dict(close.gross)
    creator = {t.currency: t.creator for t in close.summary.totals}
    earned: dict[str, Decimal] = {}
    for payout in close.payouts.lines:
        earned[payout.currency] = earned.get(payout.currency, Decimal(0)) + payout.earned
    if billed != gross or {c: earned.get(c, Decimal(0)) for c in creator} != creator:
        raise FormarketError(
            f"the invoices ({billed}), the statements' gross ({gross}) and the payouts' earnings"
            f" ({earned}) of {period} do not agree"
        )
    agree = ", ".join(
        f"{gross[c]} {c} invoiced to {len(close.invoices)} accounts = the statements' gross,"
        f" of which {creator[c]} {c} earned by creators = the payouts' earnings"
        for c in sorted(gross)
    )
    echo(f"  they agree: {agree}")
    echo(f"-- formarket invoices verify {period} invoice-{period}.json  (as {login})")
    checked = check_invoice(repo, period, body)
    if checked.problems:
        raise FormarketError(f"{login}'s invoice does not verify: {checked.problems[0]}")
    echo(
        f"  recomputed from the public usage of {invoice.account}: the same bytes; its SHA-256"
        f" {checked.sha256[:16]}... is in royalties/{period}/invoices.json"
    )
    return (
        f"{login}'s invoice of {period}: {b.usage} {b.currency} of usage, closing balance"
        f" {b.closing}; verified against the close's hash"
    )


def credited_requests(repo_path: Path, period: str, listing: str) -> int:
    """How many requests of `listing` its publisher's statement for `period` credits."""
    repo = open_repository(repo_path, search_up=False)
    publisher = listing.split("/", 1)[0]
    data = read_path(
        repo,
        commit_tree(repo, branch_tip(repo, "main")),
        f"royalties/{period}/statements/{publisher}.json",
    )
    if data is None:
        return 0
    statement = json.loads(data)
    return sum(
        line["quantity"]
        for currency in statement["currencies"]
        for line in currency["lines"]
        if line["listing"] == listing and line["metric"] == "requests"
    )
