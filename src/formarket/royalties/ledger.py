"""The double-entry ledger: every charge and every payout as a balanced transaction.

Debits are positive, credits negative, and the entries of a transaction sum to zero in its one
currency. The accounts:

    receivable:usage                 what users owe for metered usage (debit)
    payable:publisher:<publisher>    what the platform owes a creator (credit)
    revenue:platform:usage           the platform's share of usage
    revenue:platform:payout-fees     payout fees the platform keeps
    cash:payouts                     money sent to creators

A publisher's balance in a currency is minus the sum of the entries of its payable account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from formarket.royalties.money import from_minor
from formarket.royalties.rating import RatedLine
from formarket.schemas.usage import LedgerEntry, LedgerTransaction, PayoutLine

__all__ = [
    "CASH",
    "PLATFORM_FEES",
    "PLATFORM_USAGE",
    "RECEIVABLE",
    "balances",
    "payable",
    "payout_transactions",
    "usage_transactions",
]

RECEIVABLE = "receivable:usage"
PLATFORM_USAGE = "revenue:platform:usage"
PLATFORM_FEES = "revenue:platform:payout-fees"
CASH = "cash:payouts"


def payable(publisher: str) -> str:
    return f"payable:publisher:{publisher}"


def _entries(currency: str, *pairs: tuple[str, int]) -> tuple[LedgerEntry, ...]:
    return tuple(
        LedgerEntry(account=account, amount=from_minor(units, currency))
        for account, units in pairs
        if units
    )


def usage_transactions(period: str, lines: Sequence[RatedLine]) -> list[LedgerTransaction]:
    """One transaction per statement line that charges anything."""
    out = []
    for rated in lines:
        if rated.gross == 0:
            continue
        line = rated.line
        out.append(
            LedgerTransaction(
                id=f"{period}/{line.kind}/{line.usage_period}/{line.listing}@{line.version}"
                f"/{line.metric}",
                period=period,
                kind=line.kind,
                currency=rated.currency,
                entries=_entries(
                    rated.currency,
                    (RECEIVABLE, rated.gross),
                    (payable(rated.publisher), -rated.creator),
                    (PLATFORM_USAGE, -rated.platform),
                ),
            )
        )
    return sorted(out, key=lambda t: t.id)


def payout_transactions(period: str, lines: Iterable[PayoutLine]) -> list[LedgerTransaction]:
    """One transaction per payout made: the publisher's payable is debited with what is paid
    and the fee."""
    out = []
    for line in lines:
        if line.status != "paid":
            continue
        out.append(
            LedgerTransaction(
                id=f"{period}/payout/{line.publisher}/{line.currency}",
                period=period,
                kind="payout",
                currency=line.currency,
                entries=tuple(
                    LedgerEntry(account=account, amount=amount)
                    for account, amount in (
                        (payable(line.publisher), line.paid + line.fee),
                        (CASH, -line.paid),
                        (PLATFORM_FEES, -line.fee),
                    )
                    if amount
                ),
            )
        )
    return sorted(out, key=lambda t: t.id)


def balances(transactions: Iterable[LedgerTransaction]) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> the sum of its entries."""
    out: dict[tuple[str, str], Decimal] = {}
    for transaction in transactions:
        for entry in transaction.entries:
            key = (entry.account, transaction.currency)
            out[key] = out.get(key, Decimal(0)) + entry.amount
    return out
