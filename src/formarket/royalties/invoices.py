"""Invoices from the same rating as the statements: each statement line's gross is split among
the accounts whose usage made it, so that the invoices of a period add up to the statements'
gross to the cent.

    invoice_lines(usage, rating)          the usage lines of every account, per currency
    build_invoice(...)                    one account's invoice, with its private part
    invoice_index(period, commit, ...)    what the close commits of them: hashes and totals

Pure: the private part of an invoice (top-ups, subscription charges, the opening balance, the
nonce) is given by the caller, who reads it from the accounts database.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from formarket.royalties.money import allocate, from_minor
from formarket.royalties.rating import RatedLine, Rating
from formarket.royalties.render import dump_json
from formarket.royalties.tally import Quantities, UsageKey
from formarket.schemas.invoices import (
    Invoice,
    InvoiceBalance,
    InvoiceCharge,
    InvoiceCurrency,
    InvoiceIndex,
    InvoiceLine,
    InvoiceTopUp,
    InvoiceTotal,
)
from formarket.schemas.pricing import PLATFORM_CURRENCY
from formarket.schemas.usage import Metric

__all__ = [
    "AccountLines",
    "Invoicing",
    "PrivatePart",
    "build_invoice",
    "invoice_bytes",
    "invoice_hash",
    "invoice_index",
    "invoice_lines",
]

# account -> currency -> lines, in statement order
AccountLines = dict[str, dict[str, list[InvoiceLine]]]


class Invoicing(Protocol):
    """Where a close finds the private part of its invoices (the accounts database)."""

    def parts(
        self, period: str, payers: Collection[str]
    ) -> tuple[Mapping[str, str], Mapping[str, PrivatePart]]:
        """For the period's payers (names in git): each one's invoice account, and the
        private part of every account invoiced for `period` (those with usage, and those with
        top-ups, charges or a balance carried)."""
        ...


@dataclass(frozen=True)
class PrivatePart:
    """What the accounts database knows of one account's period."""

    nonce: str
    opening: Decimal = Decimal(0)
    top_ups: tuple[InvoiceTopUp, ...] = ()
    charges: tuple[InvoiceCharge, ...] = ()


def _quantity(q: Quantities, metric: Metric) -> int:
    return int(getattr(q, metric))


def invoice_lines(
    accounts: Mapping[str, Mapping[UsageKey, Quantities]], rating: Rating
) -> AccountLines:
    """Each account's share of each rated line, in proportion to its quantity (one price per
    line: a share of the quantity is a share of the exact amount)."""
    users: dict[UsageKey, list[tuple[str, Quantities]]] = defaultdict(list)
    for account, usage in accounts.items():
        for key, quantities in usage.items():
            users[key].append((account, quantities))
    out: AccountLines = {}
    for rated in rating.lines:
        _split_line(rated, users, out)
    return out


def _split_line(
    rated: RatedLine,
    users: Mapping[UsageKey, Sequence[tuple[str, Quantities]]],
    out: AccountLines,
) -> None:
    line = rated.line
    key = (line.kind, line.usage_period, line.listing, line.version)
    weights = {
        account: Fraction(_quantity(q, line.metric))
        for account, q in users.get(key, ())
        if _quantity(q, line.metric)
    }
    if sum(weights.values()) != line.quantity:
        # The reading by account sums the same events as the reading by listing version.
        raise AssertionError(f"the accounts' {line.metric} of {key} do not add up to the line's")
    parts = allocate(rated.gross, weights)
    for account in sorted(weights):
        share = InvoiceLine(
            kind=line.kind,
            usage_period=line.usage_period,
            listing=line.listing,
            version=line.version,
            metric=line.metric,
            quantity=int(weights[account]),
            unit_price=line.unit_price,
            price_unit=line.price_unit,
            amount=from_minor(parts[account], rated.currency),
        )
        out.setdefault(account, {}).setdefault(rated.currency, []).append(share)


def build_invoice(
    period: str,
    account: str,
    usage_commit: str,
    lines: Mapping[str, Sequence[InvoiceLine]],
    private: PrivatePart,
) -> Invoice:
    currencies = tuple(
        InvoiceCurrency(
            currency=currency,
            lines=tuple(lines[currency]),
            total=sum((line.amount for line in lines[currency]), Decimal(0)),
        )
        for currency in sorted(lines)
    )
    usage = next((c.total for c in currencies if c.currency == PLATFORM_CURRENCY), Decimal(0))
    top_ups = sum((t.amount for t in private.top_ups), Decimal(0))
    charges = sum((c.amount for c in private.charges), Decimal(0))
    return Invoice(
        period=period,
        account=account,
        usage_commit=usage_commit,
        nonce=private.nonce,
        currencies=currencies,
        top_ups=private.top_ups,
        charges=private.charges,
        balance=InvoiceBalance(
            currency=PLATFORM_CURRENCY,
            opening=private.opening,
            top_ups=top_ups,
            usage=usage,
            charges=charges,
            closing=private.opening + top_ups - usage - charges,
        ),
    )


def invoice_bytes(invoice: Invoice) -> bytes:
    """An invoice's bytes, as kept, served and hashed: the close's JSON form."""
    return dump_json(invoice)


def invoice_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def invoice_index(
    period: str,
    usage_commit: str,
    totals: Iterable[tuple[str, Decimal]],
    hashes: Iterable[str],
) -> InvoiceIndex:
    summed: dict[str, Decimal] = {}
    for currency, amount in totals:
        summed[currency] = summed.get(currency, Decimal(0)) + amount
    return InvoiceIndex(
        period=period,
        usage_commit=usage_commit,
        totals=tuple(
            InvoiceTotal(currency=currency, amount=summed[currency]) for currency in sorted(summed)
        ),
        invoices=tuple(sorted(set(hashes))),
    )
