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
from typing import Protocol

from formarket.royalties.money import allocate_counts, from_minor
from formarket.royalties.rating import RatedLine, Rating
from formarket.royalties.tally import UsageKey
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
from formarket.schemas.usage import money_text

__all__ = [
    "AccountLines",
    "Drafted",
    "Invoicing",
    "PrivatePart",
    "build_invoice",
    "draft_invoice",
    "invoice_bytes",
    "invoice_hash",
    "invoice_index",
    "invoice_lines",
]


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


# Where each metric is in a tally's sums (events, requests, input, output, seconds).
_SUM_OF: dict[str, int] = {
    "requests": 1,
    "input_tokens": 2,
    "output_tokens": 3,
    "instance_seconds": 4,
}


@dataclass(frozen=True, slots=True)
class Drafted:
    """An invoice as a close computes it: its bytes, and its totals for the index."""

    account: str
    data: bytes
    totals: tuple[tuple[str, Decimal], ...]
    closing: Decimal  # the balance by the books, which the next invoice opens with

    def invoice(self) -> Invoice:
        return Invoice.model_validate_json(self.data)


@dataclass(slots=True)
class AccountLines:
    """Every account's share of every rated line. A month of usage makes millions of these,
    so a share is three numbers (which line, the quantity, the amount in minor units), and
    each line's JSON is written once, by its model, with the two numbers left to fill in."""

    # per rated line: (currency, JSON up to the quantity, JSON between it and the amount)
    lines: list[tuple[str, bytes, bytes]]
    # account -> [(rated line, quantity, minor units)], in statement order
    shares: dict[str, list[tuple[int, int, int]]]


def invoice_lines(
    accounts: Mapping[str, Mapping[UsageKey, Sequence[int]]], rating: Rating
) -> AccountLines:
    """Each account's share of each rated line, in proportion to its quantity (one price per
    line: a share of the quantity is a share of the exact amount). `accounts` gives each
    account's sums per usage key, as `Tally.accounts` does."""
    users: dict[UsageKey, list[tuple[str, Sequence[int]]]] = defaultdict(list)
    for account, usage in accounts.items():
        for key, sums in usage.items():
            users[key].append((account, sums))
    out = AccountLines([], {})
    for rated in rating.lines:
        _split_line(rated, users, out)
    return out


def _template(rated: RatedLine) -> tuple[str, bytes, bytes]:
    line = rated.line
    probe = InvoiceLine(
        kind=line.kind,
        usage_period=line.usage_period,
        listing=line.listing,
        version=line.version,
        metric=line.metric,
        quantity=0,
        unit_price=line.unit_price,
        price_unit=line.price_unit,
        amount=Decimal(0),
    ).model_dump_json()
    head, found, rest = probe.partition('"quantity":0,')
    middle, end, tail = rest.rpartition('"amount":"0"}')
    if not found or not end or tail or '"quantity":' in rest:
        raise AssertionError(f"an invoice line is not written as expected: {probe}")
    return rated.currency, f'{head}"quantity":'.encode(), f',{middle}"amount":"'.encode()


def _split_line(
    rated: RatedLine,
    users: Mapping[UsageKey, Sequence[tuple[str, Sequence[int]]]],
    out: AccountLines,
) -> None:
    line = rated.line
    key = (line.kind, line.usage_period, line.listing, line.version)
    at = _SUM_OF[line.metric]
    weights = {account: quantity for account, sums in users.get(key, ()) if (quantity := sums[at])}
    if sum(weights.values()) != line.quantity:
        # The reading by account sums the same events as the reading by listing version.
        raise AssertionError(f"the accounts' {line.metric} of {key} do not add up to the line's")
    parts = allocate_counts(rated.gross, weights)
    number = len(out.lines)
    out.lines.append(_template(rated))
    shares = out.shares
    for account, quantity in weights.items():
        share = (number, quantity, parts[account])
        found = shares.get(account)
        if found is None:
            shares[account] = [share]
        else:
            found.append(share)


def draft_invoice(
    period: str,
    account: str,
    usage_commit: str,
    lines: AccountLines,
    private: PrivatePart,
) -> Drafted:
    """`build_invoice` of the account's shares, written as `invoice_bytes` writes it: the
    invoice without its lines by its model, the lines from their templates."""
    by_currency: dict[str, list[tuple[int, int, int]]] = {}
    for share in lines.shares.get(account, ()):
        by_currency.setdefault(lines.lines[share[0]][0], []).append(share)
    sections = []
    totals = []
    for currency in sorted(by_currency):
        written = []
        total = 0
        for number, quantity, units in by_currency[currency]:
            _, head, middle = lines.lines[number]
            amount = money_text(from_minor(units, currency)).encode()
            written.append(b'%s%d%s%s"}' % (head, quantity, middle, amount))
            total += units
        money = from_minor(total, currency)
        totals.append((currency, money))
        sections.append(
            b'{"currency":"%s","lines":[%s],"total":"%s"}'
            % (currency.encode(), b",".join(written), money_text(money).encode())
        )
    usage = next((m for c, m in totals if c == PLATFORM_CURRENCY), Decimal(0))
    bare_invoice = _invoice(period, account, usage_commit, (), private, usage)
    bare = bare_invoice.model_dump_json().encode()
    before, found, after = bare.partition(b'"currencies":[]')
    if not found:
        raise AssertionError("an invoice is not written as expected")
    data = before + b'"currencies":[' + b",".join(sections) + b"]" + after + b"\n"
    return Drafted(account, data, tuple(totals), bare_invoice.balance.closing)


def build_invoice(
    period: str,
    account: str,
    usage_commit: str,
    lines: Mapping[str, Sequence[InvoiceLine]],
    private: PrivatePart,
) -> Invoice:
    """An invoice from its lines per currency: the definition `draft_invoice` is held to."""
    currencies = tuple(
        InvoiceCurrency(
            currency=currency,
            lines=tuple(lines[currency]),
            total=sum((line.amount for line in lines[currency]), Decimal(0)),
        )
        for currency in sorted(lines)
    )
    usage = next((c.total for c in currencies if c.currency == PLATFORM_CURRENCY), Decimal(0))
    return _invoice(period, account, usage_commit, currencies, private, usage)


def _invoice(
    period: str,
    account: str,
    usage_commit: str,
    currencies: tuple[InvoiceCurrency, ...],
    private: PrivatePart,
    usage: Decimal,
) -> Invoice:
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
    """An invoice's bytes, as kept, served and hashed: compact JSON in the model's field
    order, UTF-8, a final newline (an invoice has a line per listing version and metric an
    account used: the indented form of the public documents took ten times as long)."""
    return invoice.model_dump_json().encode() + b"\n"


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
