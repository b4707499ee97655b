"""Invoices in the accounts database: the private part a close needs of each account, and the
invoices it computed, kept as the bytes it hashed and served to their account only.

    InvoiceStore.records(period)           what a close needs of the period: top-ups, charges
    InvoiceStore.save(period, invoices)    keep a close's invoices (again: the same bytes)
    InvoiceStore.periods(login)            an account's invoices: period, hash, totals
    InvoiceStore.body(login, period)       one invoice's bytes

An invoice names its account by pseudonym, as git does; an account whose usage git also
names by its login (documents from before pseudonyms) gets one invoice, under its pseudonym.
Its nonce is the operator's secret for (period, pseudonym): deterministic, so that a close
run again after a crash computes the very bytes whose hash it committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from formarket.accounts.models import Account, Charge, InvoiceRow, TopUp
from formarket.accounts.pseudonym import Pseudonyms
from formarket.schemas.invoices import Invoice, InvoiceCharge, InvoiceTopUp

_log = logging.getLogger("formarket.accounts")

__all__ = ["InvoiceStore", "InvoiceSummary", "PeriodRecords", "period_bounds"]

_SUBSCRIPTION = "subscription"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first moment of `period` (YYYY-MM, UTC) and of the next."""
    year, month = int(period[:4]), int(period[5:7])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _utc(moment: datetime | None) -> datetime:
    assert moment is not None  # selected by a range of it
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_PLACES = Decimal(1).scaleb(-8)


def _money(amount: Decimal) -> Decimal:
    """An amount as the database keeps it (18 places) as documents write money: at most 8
    places, no trailing zeros (the amounts of top-ups and prices have far fewer)."""
    return amount.quantize(_PLACES).normalize()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PeriodRecords:
    """By account name in git: each name's invoice account (the pseudonym of a login the
    name belongs to), the balance carried from each account's last invoice, and the
    period's top-ups and subscription charges."""

    aliases: Mapping[str, str]
    opening: Mapping[str, Decimal]
    top_ups: Mapping[str, Sequence[InvoiceTopUp]]
    charges: Mapping[str, Sequence[InvoiceCharge]]


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    period: str
    sha256: str
    totals: tuple[tuple[str, Decimal], ...]
    closing_balance: Decimal


class InvoiceStore:
    """Invoices through an engine from `open_database`, naming accounts by `pseudonyms`."""

    def __init__(
        self, engine: Engine, pseudonyms: Pseudonyms, *, clock: Callable[[], datetime] = _now
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.pseudonyms = pseudonyms
        self._clock = clock

    # --- what a close needs -----------------------------------------------------------------

    def records(self, period: str) -> PeriodRecords:
        """What the database knows of `period` for the invoices, by account name in git."""
        start, end = period_bounds(period)
        pseudonyms = self.pseudonyms
        with self._sessions() as db:
            logins: dict[int, str] = dict(db.execute(select(Account.id, Account.login)).all())
            top_ups = db.execute(
                select(TopUp.account_id, TopUp.id, TopUp.settled_at, TopUp.amount)
                .where(TopUp.state == "credited")
                .where(TopUp.settled_at >= start, TopUp.settled_at < end)
                .order_by(TopUp.settled_at, TopUp.id)
            ).all()
            charges = db.execute(
                select(Charge.account_id, Charge.id, Charge.created_at, Charge.amount)
                .where(Charge.kind == _SUBSCRIPTION)
                .where(Charge.created_at >= start, Charge.created_at < end)
                .order_by(Charge.created_at, Charge.id)
            ).all()
            earlier = db.execute(
                select(InvoiceRow.account, InvoiceRow.closing)
                .where(InvoiceRow.period < period)
                .order_by(InvoiceRow.period)
            ).all()
        named = {account_id: pseudonyms.of(login) for account_id, login in logins.items()}
        aliases = {
            name: pseudonyms.of(login)
            for login in logins.values()
            for name in pseudonyms.names(login)
        }
        # Oldest first: each account's latest earlier invoice is the one kept.
        opening = {account: _money(closing) for account, closing in earlier}
        paid: dict[str, list[InvoiceTopUp]] = {}
        for account_id, ident, settled_at, amount in top_ups:
            paid.setdefault(named[account_id], []).append(
                InvoiceTopUp(reference=ident, credited_at=_utc(settled_at), amount=_money(amount))
            )
        charged: dict[str, list[InvoiceCharge]] = {}
        for account_id, ident, created_at, amount in charges:
            charged.setdefault(named[account_id], []).append(
                InvoiceCharge(
                    kind=_SUBSCRIPTION,
                    reference=ident,
                    charged_at=_utc(created_at),
                    amount=_money(amount),
                )
            )
        return PeriodRecords(aliases, opening, paid, charged)

    def save(self, period: str, invoices: Sequence[tuple[str, str, bytes, Decimal]]) -> None:
        """Keep a close's invoices of `period` (account, SHA-256, bytes, closing balance),
        replacing what an earlier try kept."""
        now = self._clock()
        with self._sessions.begin() as db:
            db.execute(delete(InvoiceRow).where(InvoiceRow.period == period))
            db.add_all(
                InvoiceRow(
                    period=period,
                    account=account,
                    sha256=sha256,
                    body=body,
                    closing=closing,
                    created_at=now,
                )
                for account, sha256, body, closing in invoices
            )

    # --- what an account sees ---------------------------------------------------------------

    def periods(self, login: str) -> list[InvoiceSummary]:
        """`login`'s invoices, newest first."""
        name = self.pseudonyms.of(login)
        with self._sessions() as db:
            rows = db.execute(
                select(InvoiceRow.period, InvoiceRow.sha256, InvoiceRow.body)
                .where(InvoiceRow.account == name)
                .order_by(InvoiceRow.period.desc())
            ).all()
        out = []
        for period, sha256, body in rows:
            try:
                invoice = Invoice.model_validate_json(body)
            except ValidationError:
                # Written by this module only: a row that no longer reads is the database's
                # damage, reported to the operator; the account's other invoices still list.
                _log.error("the invoice of %s for %s in the database does not read", name, period)
                continue
            out.append(
                InvoiceSummary(
                    period,
                    sha256,
                    tuple((c.currency, c.total) for c in invoice.currencies),
                    invoice.balance.closing,
                )
            )
        return out

    def latest_closings(self) -> dict[str, tuple[str, Decimal]]:
        """Each invoiced account's latest invoice: name in git -> (period, closing balance)."""
        with self._sessions() as db:
            rows = db.execute(
                select(InvoiceRow.account, InvoiceRow.period, InvoiceRow.closing).order_by(
                    InvoiceRow.period
                )
            ).all()
        # In period order: each account's latest is the one kept.
        return {account: (period, _money(closing)) for account, period, closing in rows}

    def body(self, login: str, period: str) -> bytes | None:
        """`login`'s invoice of `period`, as the bytes whose hash its close committed."""
        name = self.pseudonyms.of(login)
        with self._sessions() as db:
            return db.scalar(
                select(InvoiceRow.body).where(
                    InvoiceRow.account == name, InvoiceRow.period == period
                )
            )
