"""An account checks its own invoice: recomputed from the public usage, hashed, and found in
the index its period's close committed.

The usage lines of an invoice depend on the public usage alone: the account's events (named
by its pseudonym) and every other account's share of the same statement lines (the cents are
split among them). The private part (top-ups, charges, the balance carried, the nonce) is
taken from the invoice itself: only its account and the operator know it, and the committed
hash is what shows that the operator issued exactly this invoice. No one else's invoice is
computed in full, and nothing is asked of the operator.

    check_invoice(repo, period, data)   the problems found; an empty list means it checks out
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.errors import InputError, NotFoundError
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.royalties import engine, gitio
from formarket.royalties.invoices import PrivatePart, invoice_hash
from formarket.schemas.invoices import Invoice, InvoiceIndex
from formarket.usage.scanner import Progress

__all__ = ["InvoiceCheck", "check_invoice"]

# Other accounts' invoices are computed for their usage lines only: any nonce will do.
_ANY_NONCE = "0" * 32


class _Own:
    """The private part of one invoice, as the invoice itself gives it."""

    def __init__(self, invoice: Invoice) -> None:
        self.invoice = invoice

    def parts(
        self, period: str, payers: Collection[str]
    ) -> tuple[Mapping[str, str], Mapping[str, PrivatePart]]:
        mine = self.invoice
        parts = {payer: PrivatePart(nonce=_ANY_NONCE) for payer in payers}
        parts[mine.account] = PrivatePart(
            nonce=mine.nonce,
            opening=mine.balance.opening,
            top_ups=mine.top_ups,
            charges=mine.charges,
        )
        return {}, parts


@dataclass(frozen=True)
class InvoiceCheck:
    invoice: Invoice
    sha256: str
    problems: tuple[str, ...]


def check_invoice(
    repo: BaseRepo,
    period: str,
    data: bytes,
    *,
    branch: str = "main",
    jobs: int | None = None,
    progress: Progress | None = None,
) -> InvoiceCheck:
    """Check the invoice `data` (its file's bytes, as downloaded) of `period`."""
    engine.check_period(period)
    try:
        invoice = Invoice.model_validate_json(data)
    except ValidationError as exc:
        raise InputError(
            f"not an invoice: {exc}",
            hint="give the file as downloaded (`formarket invoices get PERIOD`), unchanged",
        ) from exc
    if invoice.period != period:
        raise InputError(f"this is the invoice of {invoice.period}, not of {period}")
    tip = branch_tip(repo, branch)
    history = gitio.history(repo, tip, gitio.cache_dir_of(repo))
    if period not in history.closes:
        raise NotFoundError(f"period {period} is not closed", hint="an invoice comes with a close")
    position, folder = history.closes[period]
    closer = history.commits[position]
    problems: list[str] = []
    sha256 = invoice_hash(data)
    raw = read_path(repo, folder, "invoices.json")
    if raw is None:
        problems.append(f"the close of {period} committed no index of invoices")
    else:
        try:
            index = InvoiceIndex.model_validate_json(raw)
        except ValidationError:
            problems.append(f"royalties/{period}/invoices.json is not an index of invoices")
        else:
            if sha256 not in index.invoices:
                problems.append(
                    f"its SHA-256 {sha256} is not among the {len(index.invoices)} hashes the close"
                    f" of {period} committed: the file was changed, or is not the invoice issued"
                )
    summary = engine.closed_summary(repo, history, period)
    if invoice.usage_commit != summary.usage_commit:
        problems.append(
            f"it was computed from usage up to {invoice.usage_commit[:12]}, the close from"
            f" {summary.usage_commit[:12]}"
        )
    computed = engine.compute(
        repo,
        ObjectID(summary.usage_commit.encode()),
        period,
        summary.previous_close,
        commit_tree(repo, closer),
        jobs=jobs,
        progress=progress,
        invoicing=_Own(invoice),
    )
    again = next((i for i in computed.closing.invoices if i.account == invoice.account), None)
    if again is None:  # pragma: no cover - _Own gives the account a part, so it is invoiced
        problems.append(f"no invoice of {invoice.account} is recomputed")
    else:
        recomputed = again.data
        if recomputed != data:
            problems.append(
                "it differs from the invoice recomputed from the public usage:\n"
                + engine.text_diff(data, recomputed, f"invoice-{period}.json")
            )
    return InvoiceCheck(invoice, sha256, tuple(problems))
