"""Closing a period with the accounts' invoices: the operator's close.

The royalties compute the invoices from the usage in git; the accounts database gives each
one its private part (top-ups, subscription charges, the balance carried, the nonce) and
keeps them once the close is committed. Their hashes and totals go to git with the close.

    AccountInvoicing     the private parts of a period's invoices, from the accounts database
    close_with_invoices  close a period, commit it, keep its invoices
    reissue              a closed period's invoices computed and kept again, as committed
    reconcile            each account's balance by the books against the database's
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo

from formarket.accounts.credit import CreditStore
from formarket.accounts.invoices import InvoiceStore
from formarket.accounts.pseudonym import Pseudonyms
from formarket.accounts.store import AccountStore
from formarket.errors import FormarketError, NotFoundError
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree
from formarket.royalties import engine, gitio
from formarket.royalties.invoices import Drafted, PrivatePart, invoice_hash
from formarket.usage.scanner import Progress

__all__ = ["AccountInvoicing", "Reconciled", "close_with_invoices", "reconcile", "reissue"]


class AccountInvoicing:
    """`royalties.invoices.Invoicing` from the accounts database."""

    def __init__(self, store: InvoiceStore, pseudonyms: Pseudonyms) -> None:
        self.store = store
        self.pseudonyms = pseudonyms

    def parts(
        self, period: str, payers: Collection[str]
    ) -> tuple[Mapping[str, str], Mapping[str, PrivatePart]]:
        records = self.store.records(period)
        aliases = records.aliases
        accounts = {aliases.get(p, p) for p in payers}
        accounts |= set(records.top_ups) | set(records.charges)
        accounts |= {a for a, amount in records.opening.items() if amount}
        parts = {
            account: PrivatePart(
                nonce=self.pseudonyms.secret("invoice-nonce", f"{period}\0{account}"),
                opening=records.opening.get(account, Decimal(0)),
                top_ups=tuple(records.top_ups.get(account, ())),
                charges=tuple(records.charges.get(account, ())),
            )
            for account in accounts
        }
        return {p: aliases[p] for p in payers if p in aliases}, parts


def close_with_invoices(
    repo: BaseRepo,
    period: str,
    store: InvoiceStore,
    pseudonyms: Pseudonyms,
    *,
    branch: str = "main",
    commit: bool = False,
    now: datetime | None = None,
    jobs: int | None = None,
    say: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> tuple[engine.Computed, ObjectID | None]:
    """Close `period` with its invoices; with `commit`, commit the close and keep the
    invoices (after the commit: an invoice whose hash is not in git is never shown). `now`
    is when the close happens, as for `engine.close` (a period closes once it is over)."""
    computed, new = engine.close(
        repo,
        period,
        branch=branch,
        commit=commit,
        now=now,
        jobs=jobs,
        say=say or _quiet,
        progress=progress,
        invoicing=AccountInvoicing(store, pseudonyms),
    )
    if new is not None:
        keep(store, period, computed.closing.invoices)
    return computed, new


def keep(store: InvoiceStore, period: str, invoices: Collection[Drafted]) -> None:
    store.save(period, [(i.account, invoice_hash(i.data), i.data, i.closing) for i in invoices])


def reissue(
    repo: BaseRepo,
    period: str,
    store: InvoiceStore,
    pseudonyms: Pseudonyms,
    *,
    branch: str = "main",
    jobs: int | None = None,
    say: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> int:
    """Compute the invoices of closed `period` again and keep them, when its close was
    committed but its invoices were not kept (the process died between the two). Every
    invoice must be one whose hash the close committed; returns how many were kept."""
    tip = branch_tip(repo, branch)
    history = gitio.history(repo, tip, gitio.cache_dir_of(repo))
    if period not in history.closes:
        raise NotFoundError(f"period {period} is not closed", hint="close it first")
    hashes = engine.committed_invoices(repo, history, period)
    if hashes is None:
        raise NotFoundError(
            f"the close of {period} committed no invoices",
            hint="it was closed without them (--no-invoices): they cannot be issued now",
        )
    summary = engine.closed_summary(repo, history, period)
    computed = engine.compute(
        repo,
        ObjectID(summary.usage_commit.encode()),
        period,
        summary.previous_close,
        commit_tree(repo, history.commits[history.closes[period][0]]),
        jobs=jobs,
        say=say or _quiet,
        progress=progress,
        invoicing=AccountInvoicing(store, pseudonyms),
    )
    invoices = computed.closing.invoices
    committed = set(hashes)
    differ = [d.account for d in invoices if invoice_hash(d.data) not in committed]
    if differ or len(invoices) != len(committed):
        raise FormarketError(
            f"{len(differ)} of {len(invoices)} invoices of {period} computed again differ from"
            f" the {len(committed)} its close committed: the accounts database changed since"
            " (a top-up or a charge of the period, or an earlier invoice)",
            hint="restore the accounts database from before the change, then run this again",
        )
    keep(store, period, invoices)
    return len(invoices)


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """One account's balance by its latest invoice and in the database now. They differ by
    what happened since the period ended (calls, top-ups), by calls a killed gateway served
    after it last wrote its lease, and by rounding: the database keeps fractions of a cent
    per call, an invoice rounds each line once."""

    login: str
    period: str
    by_the_books: Decimal
    in_the_database: Decimal

    @property
    def difference(self) -> Decimal:
        return self.in_the_database - self.by_the_books


def reconcile(accounts: AccountStore, store: InvoiceStore, credit: CreditStore) -> list[Reconciled]:
    """Each account with an invoice: its latest invoice's closing balance and its balance,
    read for all accounts at once (a close reconciles every one)."""
    closings = store.latest_closings()
    balances = credit.balances()
    out = []
    for account_id, login in accounts.ids():
        latest = closings.get(store.pseudonyms.of(login))
        if latest is None:
            continue
        period, closing = latest
        out.append(Reconciled(login, period, closing, balances.get(account_id, Decimal(0))))
    return out
