"""The accounts database's tables, as SQLAlchemy 2 declarative models.

An account is a GitHub login: pull requests and deployment issues already name people by it.
A key's secret is never stored, only its SHA-256 and its last four characters (to tell keys
apart in a listing). A session is a signed-in browser; its token is stored hashed too.
The generation row is bumped by every change that must reach the gateways at once (a key
revoked or expired early): each gateway reads it to know its cache of keys is stale.

Prepaid credit: a balance per account, the slices of it that gateway processes have leased
(formarket.accounts.credit says why), and top-ups, each credited once. Money is `Money`:
NUMERIC on PostgreSQL; decimal text on SQLite, whose NUMERIC affinity would turn 0.1 into a
float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Numeric, TypeDecorator, TypeEngine

__all__ = [
    "MONEY_SCALE",
    "Account",
    "ApiKey",
    "Balance",
    "Base",
    "Charge",
    "Generation",
    "IncludedLease",
    "InvoiceRow",
    "Lease",
    "LoginState",
    "Money",
    "Session",
    "Subscription",
    "TopUp",
]

# Decimal places kept of an amount: a per-token price is a listing's price per million (8
# places at most) divided by a million, and a call's cost is a whole number of tokens at it.
MONEY_SCALE = 18
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


class Money(TypeDecorator[Decimal]):
    """An exact amount: NUMERIC(38, 18) on PostgreSQL, decimal text on SQLite."""

    impl = String(48)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(38, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = value.quantize(_QUANTUM)
        if exact != value:
            raise ValueError(f"{value} has more than {MONEY_SCALE} decimal places")
        return format(exact, "f") if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


# Named constraints, so that migrations can refer to them on every database.
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(128), unique=True)
    # GitHub's numeric user id: a login can be renamed and then taken by someone else.
    github_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(100), default="")
    # None: every deployment of the account's; else the one deployment the key may call.
    deployment: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Session(Base):
    __tablename__ = "sessions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Generation(Base):
    __tablename__ = "generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class LoginState(Base):
    """A web-flow sign-in in progress: its state, hashed, good once until it expires."""

    __tablename__ = "login_states"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Balance(Base):
    """An account's prepaid credit. `available` is what no gateway holds; each lease holds a
    slice more. `spent` totals what returned leases spent and what charges took, `credited`
    what top-ups added, so that credited == available + spent + what open leases hold (their
    amount). Only a charge (instance time already run) takes `available` below zero.
    `zero_since`: when the farm first found the balance at or below zero, while it still is
    (a top-up that lifts it above zero clears it); the platform's grace runs from there."""

    __tablename__ = "balances"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    available: Mapped[Decimal] = mapped_column(Money())
    spent: Mapped[Decimal] = mapped_column(Money())
    credited: Mapped[Decimal] = mapped_column(Money())
    zero_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Charge(Base):
    """An amount taken from a balance for something other than a call: `id` is what it is
    for (an instance-hours event's id), so that the same thing is never charged twice."""

    __tablename__ = "charges"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Lease(Base):
    """A slice of a balance that one gateway process reserves calls against in memory.
    `spent` is what its settled calls cost, as the process last wrote it; when the lease
    returns, `amount - spent` goes back to the balance."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    holder: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money())
    spent: Mapped[Decimal] = mapped_column(Money())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TopUp(Base):
    """A top-up through the payment provider: its checkout session's id, what it is for, and
    whether it was credited (once: `state` goes from open to credited or expired, never back)."""

    __tablename__ = "topups"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Subscription(Base):
    """An account's subscription to a tier of a listing: its price, included usage and
    overage price as they were when it subscribed, and the period paid for. `periods` counts
    the periods charged; the charge of period n is `sub-<id>-<n>` in `charges`, so none is
    taken twice. `state`: active, lapsed (a period the balance could not pay) or cancelled.
    `used_requests` and `used_tokens` count the included usage of the current period that
    gateways' leases (`IncludedLease`) have given back as used; a new period starts them at 0."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    listing: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(40))
    price: Mapped[Decimal] = mapped_column(Money())
    included_requests: Mapped[int | None] = mapped_column(BigInteger)
    included_tokens: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    periods: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    overage_per_request: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    used_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class IncludedLease(Base):
    """A slice of a subscription period's included usage that one gateway process draws its
    calls on in memory, as `Lease` is of a balance (formarket.accounts.included says why).
    `requests` and `tokens` are what it holds (0 in a measure the tier does not limit), the
    `used_` ones what its calls used as the process last wrote it; only a lease of the
    subscription's current `period` counts."""

    __tablename__ = "included_leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    period: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(200))
    requests: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    used_requests: Mapped[int] = mapped_column(BigInteger)
    used_tokens: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InvoiceRow(Base):
    """An account's invoice of a closed period, as the bytes whose SHA-256 the close
    committed; `account` is its name in git (its pseudonym), which is all a close knows."""

    __tablename__ = "invoices"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    account: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # Its closing balance, which the next period's invoice opens with.
    closing: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
