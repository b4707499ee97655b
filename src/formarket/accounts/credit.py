"""Prepaid credit in the accounts database: balances, the leases gateways take of them, and
top-ups.

A call must not wait for a database transaction (a few milliseconds on SQLite, more under
contention), yet several gateway processes share one balance. So a gateway process leases a
slice of an account's balance in one transaction and reserves calls against its slice in
memory (formarket.gateway.credit); it writes what its calls spent to its lease now and then,
takes more when its slice runs short, and gives the rest back when it is idle or stops. A lease
expires unless it is renewed: the lease of a process that was killed returns to the balance,
less what it had written as spent, at the next lease taken on that account.

So, whatever the processes do, leasing never takes `available` below zero and a process never
holds more than it leased: calls cannot overspend credit. Instance time is different: it has
run by the time it is metered, so its charge (`charge`, once per instance-hours event id) is
taken whole, and it alone may take `available` below zero; a gateway then leases nothing more.
(So are calls served by a process that stalled past its lease's ttl: formarket.gateway.credit
charges them the same way, once per lost lease.)
The balance shown is never below minus the instance time charged beyond it. An account at or
below zero is marked (`standing`) when the farm finds it so, and the platform's terms give it
a grace period from there before its deployments stop; a top-up that lifts it above zero
clears the mark. What the balance may miss is the cost of calls
a killed process served after it last wrote its lease (in the account's favour); the committed
usage stays the record the invoices are computed from.

Each transaction's first statement writes the account's balance row (a no-op update). That
takes the row's lock on PostgreSQL and the write lock on SQLite before anything is read, so
transactions on one balance run one after another on both, and a SQLite reader never has to
upgrade to a writer (which fails at once instead of waiting).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from formarket.accounts.models import MONEY_SCALE, Account, Balance, Charge, Lease, TopUp
from formarket.accounts.pseudonym import Pseudonyms
from formarket.accounts.store import AccountView
from formarket.errors import UsageError
from formarket.schemas.pricing import PLATFORM_CURRENCY

__all__ = [
    "BalanceView",
    "CreditStore",
    "LeaseGrant",
    "Standing",
    "TopUpView",
    "check_amount",
    "down",
    "up",
]

_ZERO = Decimal(0)
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def down(amount: Decimal) -> Decimal:
    """`amount` to the places the database keeps, rounded down (what is charged)."""
    return amount.quantize(_QUANTUM, ROUND_FLOOR)


def up(amount: Decimal) -> Decimal:
    """`amount` to the places the database keeps, rounded up (what is held)."""
    return amount.quantize(_QUANTUM, ROUND_CEILING)


# The most one top-up may add, in the platform's currency: a bound on a typing mistake.
MAX_TOPUP = Decimal(10_000)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back what it was given without its zone; everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BalanceView:
    """An account's credit: `available` to lease, `held` by gateways' leases (not yet spent
    as far as they last wrote), and their sum, the balance the account is shown."""

    account: str
    available: Decimal
    held: Decimal
    credited: Decimal
    spent: Decimal
    currency: str = PLATFORM_CURRENCY

    @property
    def balance(self) -> Decimal:
        return self.available + self.held


@dataclass(frozen=True, slots=True)
class TopUpView:
    id: str
    amount: Decimal
    currency: str
    state: str  # open, credited, expired
    created_at: datetime
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Standing:
    """An account's balance (available and held), and since when it has been at or below
    zero (None: it is above, or no one has found it at zero yet)."""

    balance: Decimal
    zero_since: datetime | None


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A lease as its holder knows it after a transaction: its id and its whole amount."""

    id: str
    amount: Decimal


def check_amount(amount: Decimal) -> Decimal:
    """A top-up's amount: above zero, at most MAX_TOPUP, in whole cents."""
    if not amount.is_finite() or amount <= 0 or amount > MAX_TOPUP:
        raise UsageError(
            f"a top-up is an amount above 0 and at most {MAX_TOPUP} {PLATFORM_CURRENCY}",
            hint="such as 10.00",
        )
    if amount != amount.quantize(Decimal("0.01")):
        raise UsageError("a top-up is in whole cents", hint="such as 10.00")
    return amount


class CreditStore:
    """Balances, leases and top-ups, through an engine from `open_database`."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    # --- reading ---------------------------------------------------------------------------

    def balance(self, account: AccountView) -> BalanceView:
        with self._sessions() as db:
            row = db.get(Balance, account.id)
            held = _ZERO
            for amount, spent in db.execute(
                select(Lease.amount, Lease.spent).where(Lease.account_id == account.id)
            ):
                held += amount - spent
        if row is None:
            return BalanceView(account.login, _ZERO, _ZERO, _ZERO, _ZERO)
        return BalanceView(account.login, row.available, held, row.credited, row.spent)

    def balances(self) -> dict[int, Decimal]:
        """Every account's balance (available and held by leases), by account id, in two
        queries: what a close reconciles, for every account at once."""
        with self._sessions() as db:
            found: dict[int, Decimal] = dict(
                db.execute(select(Balance.account_id, Balance.available)).all()
            )
            for account_id, amount, spent in db.execute(
                select(Lease.account_id, Lease.amount, Lease.spent)
            ):
                found[account_id] = found.get(account_id, _ZERO) + amount - spent
        return found

    def topups(self, account: AccountView) -> list[TopUpView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(TopUp)
                .where(TopUp.account_id == account.id)
                .order_by(TopUp.created_at, TopUp.id)
            ).all()
        return [
            TopUpView(
                r.id,
                r.amount,
                r.currency,
                r.state,
                _utc(r.created_at),
                None if r.settled_at is None else _utc(r.settled_at),
            )
            for r in rows
        ]

    def account_id(self, login: str) -> int | None:
        with self._sessions() as db:
            return db.scalar(select(Account.id).where(Account.login == login))

    def accounts_named(self, names: Iterable[str], pseudonyms: Pseudonyms) -> dict[str, int]:
        """The account ids of `names` as git writes them (pseudonyms, or the logins of
        documents from before pseudonyms); a name no account has is left out. Every login is
        hashed: the database keeps no pseudonym, since only the key's holders can make one."""
        wanted = set(names)
        if not wanted:
            return {}
        found: dict[str, int] = {}
        with self._sessions() as db:
            for account_id, login in db.execute(select(Account.id, Account.login)):
                for name in pseudonyms.names(login):
                    if name in wanted:
                        found[name] = account_id
        return found

    def standing(self, account_id: int, *, mark: bool = False) -> Standing:
        """The account's balance and since when it is at zero; with `mark` (the farm, which
        bills instance time), a balance found at or below zero is marked so from now, and one
        found above zero is unmarked."""
        with self._sessions.begin() as db:
            if mark:
                self._ensure_balance(db, account_id)
                self._touch(db, account_id)
            row = db.get(Balance, account_id, populate_existing=True)
            if row is None:
                return Standing(_ZERO, None)
            balance = row.available + self._held(db, account_id)
            if mark and balance <= 0 and row.zero_since is None:
                row.zero_since = self._clock()
            elif mark and balance > 0 and row.zero_since is not None:
                row.zero_since = None
            since = None if row.zero_since is None else _utc(row.zero_since)
            return Standing(balance, since)

    def charged(self, charge_id: str) -> Decimal | None:
        """What the charge `charge_id` took; None when there is none."""
        with self._sessions() as db:
            return db.scalar(select(Charge.amount).where(Charge.id == charge_id))

    # --- charges (the farm) ----------------------------------------------------------------

    def charge(self, account_id: int, charge_id: str, amount: Decimal, kind: str) -> Decimal:
        """Bring the charge `charge_id` to `amount` in all (rounded down to the places kept),
        taking from the balance what it had not taken yet; what this call took. So a charge
        asked again takes nothing (a retried metering cycle), and one asked for more takes
        the difference (an instance-hour reported again, longer, after a crash). An id that
        is another account's takes nothing. Taken whole even below zero: it is for time that
        has run already."""
        amount = down(amount)
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"a charge is an amount of at least 0, not {amount}")
        if not 0 < len(charge_id) <= 255 or not 0 < len(kind) <= 16:
            raise ValueError("a charge's id is 1 to 255 characters, its kind 1 to 16")
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self._sessions.begin() as db:
            self._ensure_balance(db, account_id)
            self._touch(db, account_id)
            db.execute(
                insert(Charge)
                .values(
                    id=charge_id,
                    account_id=account_id,
                    kind=kind,
                    amount=_ZERO,
                    created_at=self._clock(),
                )
                .on_conflict_do_nothing()
            )
            # Locked: two charges of one id are of one account, whose row is locked already;
            # an id of another account's is locked here, and left alone.
            row = db.scalars(select(Charge).where(Charge.id == charge_id).with_for_update()).one()
            if row.account_id != account_id or row.amount >= amount:
                return _ZERO
            taken = amount - row.amount
            row.amount = amount
            balance = db.get(Balance, account_id, populate_existing=True)
            assert balance is not None  # made above
            balance.available = balance.available - taken
            balance.spent = balance.spent + taken
            return taken

    # --- top-ups ---------------------------------------------------------------------------

    def open_topup(self, account: AccountView, topup_id: str, amount: Decimal) -> None:
        """Record a top-up the provider is taking payment for (its checkout session's id)."""
        check_amount(amount)
        if not 0 < len(topup_id) <= 255:
            raise UsageError("a top-up's id is 1 to 255 characters")
        with self._sessions.begin() as db:
            db.add(
                TopUp(
                    id=topup_id,
                    account_id=account.id,
                    amount=amount,
                    currency=PLATFORM_CURRENCY,
                    state="open",
                    created_at=self._clock(),
                    settled_at=None,
                )
            )

    def credit_topup(self, topup_id: str, amount: Decimal, currency: str) -> bool:
        """Credit an open top-up that was paid `amount` `currency`, once: True when this
        call credited it; False for a top-up unknown, already credited or expired, or paid
        a different amount than it was opened for (which credits nothing)."""
        with self._sessions.begin() as db:
            row = db.get(TopUp, topup_id)
            if row is None or row.amount != amount or row.currency != currency.upper():
                return False
            self._ensure_balance(db, row.account_id)
            self._touch(db, row.account_id)
            # The state changes from open only once, whichever transaction gets there first.
            changed = _changed(
                db,
                update(TopUp)
                .where(TopUp.id == topup_id, TopUp.state == "open")
                .values(state="credited", settled_at=self._clock()),
            )
            if changed != 1:
                return False
            balance = db.get(Balance, row.account_id, populate_existing=True)
            assert balance is not None  # made above
            balance.available = balance.available + amount
            balance.credited = balance.credited + amount
            if (
                balance.zero_since is not None
                and balance.available + self._held(db, row.account_id) > 0
            ):
                balance.zero_since = None  # above zero again: no stop is pending
            return True

    def expire_topup(self, topup_id: str) -> bool:
        """An open top-up whose checkout expired unpaid: never credited after."""
        with self._sessions.begin() as db:
            expired = update(TopUp).where(TopUp.id == topup_id, TopUp.state == "open")
            return _changed(db, expired.values(state="expired", settled_at=self._clock())) == 1

    def grant(self, account: AccountView, amount: Decimal) -> str:
        """Credit `amount` by the operator's hand (the demo, support): recorded as a top-up
        of its own, credited at once. Its id."""
        topup_id = f"grant_{secrets.token_hex(12)}"
        self.open_topup(account, topup_id, amount)
        self.credit_topup(topup_id, amount, PLATFORM_CURRENCY)
        return topup_id

    # --- leases (the gateways) -------------------------------------------------------------

    def take(
        self,
        account_id: int,
        holder: str,
        lease: LeaseGrant | None,
        spent: Decimal,
        *,
        short: Decimal,
        more: Decimal,
        ttl: timedelta,
    ) -> tuple[LeaseGrant | None, Decimal]:
        """Add to `lease` (None: a new one) at least `short` and up to `more` (but no more
        than half of what is available, unless `short` needs more) from the account's
        available credit, recording `spent` as what it has spent. Returns the
        lease as it now is (None when it was lost: it expired, and its holder must forget
        it) and what was added (0 when `short` could not be had: nothing was added)."""
        now = self._clock()
        short, more, spent = up(short), down(more), down(spent)
        with self._sessions.begin() as db:
            if not self._touch(db, account_id):
                return lease, _ZERO
            self._sweep(db, account_id, now, keep=lease.id if lease is not None else None)
            row = db.get(Lease, lease.id) if lease is not None else None
            if lease is not None and row is None:
                return None, _ZERO
            available = db.scalar(select(Balance.available).where(Balance.account_id == account_id))
            available = _ZERO if available is None else available
            # At most half of what is left beyond what is short, so that other processes
            # serving the account find some too.
            extra = min(available, max(short, min(more, down(available / 2))))
            if extra < short or extra <= 0:
                if row is not None:
                    row.spent, row.expires_at = min(spent, row.amount), now + ttl
                return lease, _ZERO
            db.execute(
                update(Balance)
                .where(Balance.account_id == account_id)
                .values(available=available - extra)
            )
            if row is None:
                row = Lease(
                    id=secrets.token_hex(16),
                    account_id=account_id,
                    holder=holder[:200],
                    amount=extra,
                    spent=_ZERO,
                    expires_at=now + ttl,
                )
                db.add(row)
            else:
                row.amount = row.amount + extra
                row.spent = min(spent, row.amount)
                row.expires_at = now + ttl
            db.flush()
            return LeaseGrant(row.id, row.amount), extra

    def renew(self, lease: LeaseGrant, spent: Decimal, ttl: timedelta) -> bool:
        """Write what a lease has spent and keep it for `ttl` more; False when it is gone."""
        with self._sessions.begin() as db:
            renewed = update(Lease).where(Lease.id == lease.id)
            values = {"spent": min(down(spent), lease.amount), "expires_at": self._clock() + ttl}
            return _changed(db, renewed.values(**values)) == 1

    def give_back(self, account_id: int, lease: LeaseGrant, spent: Decimal) -> bool:
        """End a lease: what it did not spend returns to the balance. False when it was gone
        already (it expired and returned, less what it had written as spent)."""
        with self._sessions.begin() as db:
            self._touch(db, account_id)
            # The row's amount, not the holder's: a top-up the holder never heard back from
            # (its task was cancelled after the transaction committed) is in the row only.
            amount = db.scalar(select(Lease.amount).where(Lease.id == lease.id))
            if amount is None:
                return False
            spent = min(down(spent), amount)
            db.execute(delete(Lease).where(Lease.id == lease.id))
            _return(db, account_id, amount - spent, spent)
            return True

    def _sweep(self, db: OrmSession, account_id: int, now: datetime, keep: str | None) -> None:
        """Return the account's expired leases (but `keep`, whose holder is asking)."""
        expired = db.execute(
            select(Lease.id, Lease.amount, Lease.spent).where(
                Lease.account_id == account_id, Lease.expires_at < now
            )
        ).all()
        for lease_id, amount, spent in expired:
            if lease_id == keep:
                continue
            db.execute(delete(Lease).where(Lease.id == lease_id))
            _return(db, account_id, amount - spent, spent)

    def _touch(self, db: OrmSession, account_id: int) -> bool:
        """Lock the account's balance row before anything is read (see the module's doc)."""
        touched = update(Balance).where(Balance.account_id == account_id)
        return _changed(db, touched.values(account_id=Balance.account_id)) == 1

    def _held(self, db: OrmSession, account_id: int) -> Decimal:
        held = _ZERO
        for amount, spent in db.execute(
            select(Lease.amount, Lease.spent).where(Lease.account_id == account_id)
        ):
            held += amount - spent
        return held

    def _ensure_balance(self, db: OrmSession, account_id: int) -> None:
        values = {"account_id": account_id, "available": _ZERO, "spent": _ZERO, "credited": _ZERO}
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        db.execute(insert(Balance).values(**values).on_conflict_do_nothing())


def _return(db: OrmSession, account_id: int, unspent: Decimal, spent: Decimal) -> None:
    row = db.get(Balance, account_id, populate_existing=True)
    assert row is not None  # the caller touched it
    row.available = row.available + unspent
    row.spent = row.spent + spent
    db.flush()


def _changed(db: OrmSession, statement: Executable) -> int:
    """The rows an UPDATE or DELETE changed."""
    result = cast(CursorResult[Any], db.execute(statement))
    return result.rowcount
