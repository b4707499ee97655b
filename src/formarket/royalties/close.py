"""Closing a period: a pure function from the period's usage and the terms to every document.

    close_period(tally, context) -> Closing      rating, split, ledger, payouts, statements
    render_closing(closing) -> {path: bytes}     the exact bytes of royalties/YYYY-MM/

Nothing here reads a clock, a file or git: the same inputs give the same bytes, which is what
lets anyone recompute a closed period and compare (`formarket royalties verify`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import add

from formarket.royalties import ledger as ledger_rules
from formarket.royalties.invoices import (
    Drafted,
    PrivatePart,
    draft_invoice,
    invoice_hash,
    invoice_index,
    invoice_lines,
)
from formarket.royalties.money import from_minor, to_minor_exact
from formarket.royalties.payouts import Balance, payouts
from formarket.royalties.pricebook import PriceBook
from formarket.royalties.rating import RatedLine, Rating, rate
from formarket.royalties.render import dump_json, render_statement, render_summary
from formarket.royalties.tally import Tally, UsageKey
from formarket.schemas.publisher import Payout
from formarket.schemas.usage import (
    CurrencyStatement,
    CurrencyTotals,
    LedgerTransaction,
    PayoutLine,
    Payouts,
    PolicyRef,
    PreviousClose,
    RoyaltyPolicy,
    Statement,
    Summary,
)

__all__ = ["CloseContext", "Closing", "close_period", "dump_json", "render_closing"]


@dataclass(frozen=True)
class CloseContext:
    """Everything besides usage that a close depends on, as read from one commit."""

    period: str
    usage_commit: str
    previous: PreviousClose | None
    policy: RoyaltyPolicy
    policy_ref: PolicyRef
    book: PriceBook
    methods: Mapping[str, Payout | None]
    prior: Mapping[tuple[str, str], Balance] = field(default_factory=dict)
    # With invoices: each payer's invoice account (its name in git, or the pseudonym of an
    # account git also names by its login) and every invoice account's private part.
    invoicing: tuple[Mapping[str, str], Mapping[str, PrivatePart]] | None = None


@dataclass(frozen=True)
class Closing:
    summary: Summary
    statements: tuple[Statement, ...]
    ledger: tuple[LedgerTransaction, ...]
    payouts: Payouts
    # The invoices, when the close has their private parts (the operator's close; a verify
    # recomputes the rest without them).
    invoices: tuple[Drafted, ...] = ()

    @property
    def gross(self) -> tuple[tuple[str, Decimal], ...]:
        """The statements' gross per currency: what the invoices split."""
        found: dict[str, Decimal] = {}
        for statement in self.statements:
            for section in statement.currencies:
                found[section.currency] = found.get(section.currency, Decimal(0)) + section.gross
        return tuple(sorted(found.items()))


def close_period(tally: Tally, context: CloseContext) -> Closing:
    period = context.period
    rating = rate(tally.usage, context.book, context.policy.rounding)
    usage_ledger = ledger_rules.usage_transactions(period, rating.lines)
    earned: dict[tuple[str, str], int] = {}
    for rated in rating.lines:
        key = (rated.publisher, rated.currency)
        earned[key] = earned.get(key, 0) + rated.creator
    payout_lines = payouts(period, earned, context.prior, context.policy, context.methods)
    payout_ledger = ledger_rules.payout_transactions(period, payout_lines)
    publishers = sorted(
        {r.publisher for r in rating.lines}
        | {p for p, _ in rating.unrated}
        | {line.publisher for line in payout_lines}
    )
    statements = tuple(
        Statement(
            period=period,
            publisher=publisher,
            usage_commit=context.usage_commit,
            policy=context.policy_ref,
            currencies=_currencies([r for r in rating.lines if r.publisher == publisher]),
            unrated=tuple(u for p, u in rating.unrated if p == publisher),
            payouts=tuple(line for line in payout_lines if line.publisher == publisher),
        )
        for publisher in publishers
    )
    summary = Summary(
        period=period,
        usage_commit=context.usage_commit,
        previous_close=context.previous,
        policy=context.policy_ref,
        counts=tally.counts,
        totals=_totals(rating.lines, payout_lines),
        conflicts=tally.conflicts,
        set_aside=tally.set_aside,
        files={},
    )
    return Closing(
        summary,
        statements,
        (*usage_ledger, *payout_ledger),
        Payouts(period=period, policy=context.policy_ref, lines=payout_lines),
        _invoices(tally, rating, context),
    )


def _invoices(tally: Tally, rating: Rating, context: CloseContext) -> tuple[Drafted, ...]:
    if context.invoicing is None:
        return ()
    aliases, private = context.invoicing
    merged: dict[str, dict[UsageKey, list[int]]] = dict(tally.accounts)
    for payer in [p for p in merged if p in aliases and aliases[p] != p]:
        # One account, named in git by its login as well as its pseudonym: one invoice.
        usage = merged.pop(payer)
        mine = merged[aliases[payer]] = dict(merged.get(aliases[payer], {}))
        for key, sums in usage.items():
            before = mine.get(key)
            mine[key] = sums if before is None else list(map(add, before, sums))
    lines = invoice_lines(merged, rating)
    missing = sorted(set(lines.shares) - set(private))
    if missing:
        raise AssertionError(f"no private part for the invoice of {missing[0]}")
    return tuple(
        draft_invoice(context.period, account, context.usage_commit, lines, part)
        for account, part in sorted(private.items())
    )


def _currencies(lines: list[RatedLine]) -> tuple[CurrencyStatement, ...]:
    out = []
    for currency in sorted({r.currency for r in lines}):
        mine = [r for r in lines if r.currency == currency]
        # Totals are sums of the rounded lines: nothing is rounded twice.
        out.append(
            CurrencyStatement(
                currency=currency,
                lines=tuple(r.line for r in mine),
                gross=from_minor(sum(r.gross for r in mine), currency),
                creator=from_minor(sum(r.creator for r in mine), currency),
                platform=from_minor(sum(r.platform for r in mine), currency),
            )
        )
    return tuple(out)


def _totals(
    lines: tuple[RatedLine, ...], payout_lines: tuple[PayoutLine, ...]
) -> tuple[CurrencyTotals, ...]:
    currencies = sorted({r.currency for r in lines} | {p.currency for p in payout_lines})
    out = []
    for currency in currencies:
        mine = [r for r in lines if r.currency == currency]
        paid = [p for p in payout_lines if p.currency == currency]
        out.append(
            CurrencyTotals(
                currency=currency,
                gross=from_minor(sum(r.gross for r in mine), currency),
                creator=from_minor(sum(r.creator for r in mine), currency),
                platform=from_minor(sum(r.platform for r in mine), currency),
                adjustments=from_minor(
                    sum(r.gross for r in mine if r.line.kind == "adjustment"), currency
                ),
                paid=from_minor(sum(to_minor_exact(p.paid, currency) for p in paid), currency),
                fees=from_minor(sum(to_minor_exact(p.fee, currency) for p in paid), currency),
            )
        )
    return tuple(out)


def render_closing(
    closing: Closing, invoice_hashes: Sequence[str] | None = None
) -> dict[str, bytes]:
    """Every file of the period, by path relative to royalties/YYYY-MM/. The index of the
    invoices is written from the invoices when the closing has them, else from
    `invoice_hashes` (those a close committed, for a verify to recompute the rest)."""
    files: dict[str, bytes] = {}
    period, commit = closing.summary.period, closing.summary.usage_commit
    if closing.invoices:
        files["invoices.json"] = dump_json(
            invoice_index(
                period,
                commit,
                (total for drafted in closing.invoices for total in drafted.totals),
                (invoice_hash(drafted.data) for drafted in closing.invoices),
            )
        )
    elif invoice_hashes is not None:
        files["invoices.json"] = dump_json(
            invoice_index(period, commit, closing.gross, invoice_hashes)
        )
    for statement in closing.statements:
        base = f"statements/{statement.publisher}"
        files[f"{base}.json"] = dump_json(statement)
        files[f"{base}.md"] = render_statement(statement).encode()
    files["ledger.jsonl"] = b"".join(
        json.dumps(t.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n"
        for t in closing.ledger
    )
    files["payouts.json"] = dump_json(closing.payouts)
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
    summary = closing.summary.model_copy(update={"files": digests})
    files["README.md"] = render_summary(summary, closing.payouts).encode()
    digests["README.md"] = hashlib.sha256(files["README.md"]).hexdigest()
    summary = summary.model_copy(update={"files": dict(sorted(digests.items()))})
    files["summary.json"] = dump_json(summary)
    return dict(sorted(files.items()))
