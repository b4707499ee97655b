"""Invoices: what one account owes for a closed period, and what the close commits of them.

An invoice is private: it names an account's top-ups, its subscriptions and its balance. It is
kept by the operator and given to its account only. What the close commits to the public
repository is an index (`InvoiceIndex`): each invoice's SHA-256 and the totals of them all,
which equal the gross the creators' statements split. The `nonce`, a secret of the operator
derived per account and period, is in the invoice so that its hash tells nothing to someone
who guesses its contents; the account reads it in its own invoice.

The usage lines of an invoice are computed from the public usage alone (the account's events,
named by its pseudonym): anyone holding their invoice can recompute those lines and check the
file's hash against the index (`formarket invoices verify`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from formarket.schemas._base import Document
from formarket.schemas._types import CurrencyCode, ListingId, SemVer
from formarket.schemas.usage import CommitId, EventTime, LineKind, Metric, Money, Period

__all__ = [
    "INVOICE_HASH_PATTERN",
    "Invoice",
    "InvoiceBalance",
    "InvoiceCharge",
    "InvoiceCurrency",
    "InvoiceIndex",
    "InvoiceLine",
    "InvoiceTopUp",
    "InvoiceTotal",
]

INVOICE_HASH_PATTERN = r"^[0-9a-f]{64}$"
InvoiceHash = Annotated[str, StringConstraints(pattern=INVOICE_HASH_PATTERN)]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"


class InvoiceLine(Document):
    """An account's share of one statement line: its quantity, and its part of the line's
    gross (split among the accounts by the largest-remainder method, so that the parts add
    up to the gross exactly)."""

    kind: LineKind
    usage_period: Period
    listing: ListingId
    version: SemVer
    metric: Metric
    quantity: int = Field(ge=0)
    unit_price: Decimal
    price_unit: Literal["request", "million tokens", "hour"]
    amount: Money


class InvoiceCurrency(Document):
    currency: CurrencyCode
    lines: tuple[InvoiceLine, ...]
    total: Money

    @model_validator(mode="after")
    def _adds_up(self) -> InvoiceCurrency:
        if sum((line.amount for line in self.lines), Decimal(0)) != self.total:
            raise ValueError(f"the {self.currency} lines do not add up to the total")
        return self


class InvoiceTopUp(Document):
    reference: str = Field(max_length=255, description="The payment provider's checkout id.")
    credited_at: EventTime
    amount: Money


class InvoiceCharge(Document):
    """A charge to the balance that is not usage: a subscription's period."""

    kind: Literal["subscription"]
    reference: str = Field(max_length=255)
    charged_at: EventTime
    amount: Money


class InvoiceBalance(Document):
    """The prepaid balance by the books: the previous invoice's closing balance, plus the
    period's top-ups, less its usage (in the platform's currency) and its charges."""

    currency: CurrencyCode
    opening: Money
    top_ups: Money
    usage: Money
    charges: Money
    closing: Money

    @model_validator(mode="after")
    def _adds_up(self) -> InvoiceBalance:
        if self.opening + self.top_ups - self.usage - self.charges != self.closing:
            raise ValueError("the closing balance is not opening + top-ups - usage - charges")
        return self


class Invoice(Document):
    format: Literal["formarket.invoice/1"] = "formarket.invoice/1"
    period: Period
    account: str = Field(pattern=_NAME, description="The account's name in git: its pseudonym.")
    usage_commit: CommitId
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    currencies: tuple[InvoiceCurrency, ...]
    top_ups: tuple[InvoiceTopUp, ...]
    charges: tuple[InvoiceCharge, ...]
    balance: InvoiceBalance


class InvoiceTotal(Document):
    currency: CurrencyCode
    amount: Money


class InvoiceIndex(Document):
    """What a close commits of its invoices: their hashes (sorted: their order tells
    nothing) and their totals per currency, which equal the statements' gross."""

    format: Literal["formarket.invoice-index/1"] = "formarket.invoice-index/1"
    period: Period
    usage_commit: CommitId
    totals: tuple[InvoiceTotal, ...]
    invoices: tuple[InvoiceHash, ...]

    @model_validator(mode="after")
    def _sorted(self) -> InvoiceIndex:
        if list(self.invoices) != sorted(set(self.invoices)):
            raise ValueError("the invoices' hashes are not sorted and distinct")
        return self
