"""Invoices: each account's share of the statements' lines, adding up to their gross."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.royalties import engine
from formarket.royalties.invoices import PrivatePart, invoice_bytes, invoice_hash
from formarket.royalties.money import allocate, allocate_counts
from formarket.schemas.invoices import Invoice, InvoiceIndex, InvoiceTopUp
from tests.royalties.helpers import PERIOD, Offer, listed, market_of
from tests.royalties.strategies import files_of, offer_lists, usage
from tests.usage.helpers import call

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAYERS = ("acct-a", "acct-b", "ada", "u@example.org", "acct-c")


class Books:
    """Private parts held in memory, as the accounts database would give them."""

    def __init__(
        self,
        aliases: Mapping[str, str] | None = None,
        top_ups: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.aliases = dict(aliases or {})
        self.top_ups = dict(top_ups or {})

    def parts(
        self, period: str, payers: Collection[str]
    ) -> tuple[Mapping[str, str], Mapping[str, PrivatePart]]:
        accounts = {self.aliases.get(p, p) for p in payers} | set(self.top_ups)
        return {p: self.aliases[p] for p in payers if p in self.aliases}, {
            account: PrivatePart(
                nonce=hashlib.sha256(f"{period}/{account}".encode()).hexdigest()[:32],
                top_ups=tuple(
                    InvoiceTopUp(
                        reference=f"cs_{account}",
                        credited_at=f"{period}-02T10:00:00Z",  # type: ignore[arg-type]
                        amount=self.top_ups[account],
                    )
                    for _ in range(1)
                    if account in self.top_ups
                ),
            )
            for account in accounts
        }


@st.composite
def paid_usage(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]]]:
    offers = draw(offer_lists())
    events = draw(usage(offers))
    for event in events:
        event["data"]["account"] = draw(st.sampled_from(PAYERS))
    return listed(offers), events


def _gross(computed: engine.Computed) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for statement in computed.closing.statements:
        for section in statement.currencies:
            out[section.currency] = out.get(section.currency, Decimal(0)) + section.gross
    return {c: v for c, v in out.items() if v or c in out}


@PROPERTY
@given(paid_usage())
def test_invoices_total_the_statements_gross_to_the_cent(scenario: Any) -> None:
    listings, events = scenario
    computed = engine.preview(market_of(listings, files_of(events)), PERIOD, invoicing=Books())
    drafted = computed.closing.invoices
    invoices = [d.invoice() for d in drafted]
    # Written from templates as the model writes them: parsed and written again, the same.
    assert [invoice_bytes(i) for i in invoices] == [d.data for d in drafted]
    billed: dict[str, Decimal] = {}
    for invoice in invoices:
        for section in invoice.currencies:
            billed[section.currency] = billed.get(section.currency, Decimal(0)) + section.total
    gross = _gross(computed)
    assert {c: billed.get(c, Decimal(0)) for c in gross} == gross
    assert set(billed) <= set(gross)
    # Line by line: the accounts' quantities and amounts add up to the statement's line.
    shares: dict[tuple[str, ...], tuple[int, Decimal]] = {}
    for invoice in invoices:
        for section in invoice.currencies:
            for line in section.lines:
                key = (line.kind, line.usage_period, line.listing, line.version, line.metric)
                quantity, amount = shares.get(key, (0, Decimal(0)))
                shares[key] = (quantity + line.quantity, amount + line.amount)
    for statement in computed.closing.statements:
        for section in statement.currencies:
            for line in section.lines:
                key = (line.kind, line.usage_period, line.listing, line.version, line.metric)
                assert shares.pop(key) == (line.quantity, line.gross)
    assert not shares
    # The committed index: every invoice's hash, and the same totals.
    index = InvoiceIndex.model_validate_json(computed.files["invoices.json"]) if invoices else None
    if index is not None:
        assert set(index.invoices) == {invoice_hash(invoice_bytes(i)) for i in invoices}
        assert {t.currency: t.amount for t in index.totals} == {
            c: v for c, v in billed.items() if c in {t.currency for t in index.totals}
        }


PRICED = Offer(
    "model",
    "acme/chat",
    "1.0.0",
    {"model": "per_request", "currency": "USD", "per_request": "0.01"},
    "70",
)


def _calls(accounts: list[str]) -> dict[str, bytes]:
    events = [
        call(f"c-{i}", model=("acme/chat", "1.0.0"), time="2026-03-05T10:00:00Z", requests=1)
        for i in range(len(accounts))
    ]
    for event, account in zip(events, accounts, strict=True):
        event["data"]["account"] = account
    return files_of(events)


def test_an_account_named_by_login_and_pseudonym_gets_one_invoice_with_its_top_ups() -> None:
    pseudonym = "acct_" + "a" * 26
    books = Books({"ada": pseudonym}, {pseudonym: Decimal("5.00"), "acct_" + "b" * 26: Decimal(1)})
    files = _calls(["ada", pseudonym, pseudonym, "acct-z"])
    computed = engine.preview(market_of(listed([PRICED]), files), PERIOD, invoicing=books)
    by_account = {d.account: d.invoice() for d in computed.closing.invoices}
    assert set(by_account) == {pseudonym, "acct-z", "acct_" + "b" * 26}
    mine = by_account[pseudonym]
    assert [(line.quantity, line.amount) for line in mine.currencies[0].lines] == [
        (3, Decimal("0.03"))
    ]
    assert mine.balance.opening == 0
    assert mine.balance.top_ups == Decimal("5.00")
    assert mine.balance.usage == Decimal("0.03")
    assert mine.balance.closing == Decimal("4.97")
    # A top-up alone makes an invoice, with no usage lines.
    assert by_account["acct_" + "b" * 26].currencies == ()


def test_a_cent_split_three_ways_goes_to_one_account_by_largest_remainder() -> None:
    # Three calls at a third of a cent: the line's gross is one cent, billed once.
    offer = Offer(
        "model",
        "acme/chat",
        "1.0.0",
        {"model": "per_request", "currency": "USD", "per_request": "0.0033334"},
        "70",
    )
    files = _calls(["acct-a", "acct-b", "acct-c"])
    computed = engine.preview(market_of(listed([offer]), files), PERIOD, invoicing=Books())
    amounts = sorted(d.invoice().currencies[0].total for d in computed.closing.invoices)
    assert amounts == [Decimal("0.00"), Decimal("0.00"), Decimal("0.01")]


def test_without_invoicing_no_index_is_written_and_a_verify_keeps_the_committed_hashes() -> None:
    files = _calls(["acct-a", "acct-b"])
    plain = engine.preview(market_of(listed([PRICED]), files), PERIOD)
    assert "invoices.json" not in plain.files
    with_books = engine.preview(market_of(listed([PRICED]), files), PERIOD, invoicing=Books())
    index = json.loads(with_books.files["invoices.json"])
    assert index["totals"] == [{"currency": "USD", "amount": "0.02"}]
    assert len(index["invoices"]) == 2
    summary = json.loads(with_books.files["summary.json"])
    assert (
        summary["files"]["invoices.json"]
        == hashlib.sha256(with_books.files["invoices.json"]).hexdigest()
    )


def test_an_invoice_whose_lines_do_not_add_up_is_refused() -> None:
    part = Books().parts(PERIOD, ["acct-a"])[1]["acct-a"]
    with pytest.raises(ValueError, match="do not add up"):
        Invoice.model_validate(
            {
                "period": PERIOD,
                "account": "acct-a",
                "usage_commit": "a" * 40,
                "nonce": part.nonce,
                "currencies": [
                    {
                        "currency": "USD",
                        "lines": [
                            {
                                "kind": "usage",
                                "usage_period": PERIOD,
                                "listing": "acme/chat",
                                "version": "1.0.0",
                                "metric": "requests",
                                "quantity": 1,
                                "unit_price": "0.01",
                                "price_unit": "request",
                                "amount": "0.01",
                            }
                        ],
                        "total": "0.02",
                    }
                ],
                "top_ups": [],
                "charges": [],
                "balance": {
                    "currency": "USD",
                    "opening": "0",
                    "top_ups": "0",
                    "usage": "0.02",
                    "charges": "0",
                    "closing": "-0.02",
                },
            }
        )


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), st.integers(0, 10**9), min_size=1),
)
def test_splitting_by_counts_is_splitting_by_fractions(total: int, counts: dict[str, int]) -> None:
    if not any(counts.values()):
        with pytest.raises(ValueError, match="zero"):
            allocate_counts(total, counts)
        return
    parts = allocate_counts(total, counts)
    assert parts == allocate(total, {name: Fraction(c) for name, c in counts.items()})
    assert sum(parts.values()) == total
