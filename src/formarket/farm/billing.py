"""Instance time drawn on the paying account's balance.

Each instance-hours event the meter writes is charged to its account at the per-hour price
of the listing version it credits (the agent's for an agent, as the royalties credit it).
The charge's id is the event's id without its end, `ih-<deployment>-<from>`, and the accounts
database brings a charge id up to the amount asked, never down and never twice: a metering
cycle retried charges nothing more, and one that crashed before saving its clock, whose next
cycle reports the same slices again but longer (they start where the saved clock left them),
charges the extra time only.

The charges are written to a pending file in the farm's state folder before the meter's
clock moves on, then applied to the accounts database; what could not be applied (the
database is down) stays pending for the next cycle. So instance time that was spooled is
charged once it can be, never lost to a crash or an outage, and never twice. An account git
names that the accounts database does not know (it never signed in) has no balance to draw
on: its charges are dropped, and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from formarket.accounts.credit import CreditStore
from formarket.accounts.pseudonym import Pseudonyms
from formarket.atomicfile import write_atomically
from formarket.schemas.pricing import PLATFORM_CURRENCY, PerInstanceHourPricing

__all__ = [
    "Billed",
    "HourPrices",
    "InstanceCharge",
    "hour_price",
    "instance_charges",
    "pending_charges",
    "record_charges",
    "settle_charges",
]

_log = logging.getLogger("formarket.farm")
_HOUR = 3600
KIND = "instance"
# The pending file, in the farm's state folder.
PENDING = "charges-pending.json"

# The per-hour price of a listing version (id, version) in the platform's currency; 0: none.
HourPrices = Callable[[str, str], Decimal]


@dataclass(frozen=True, slots=True)
class InstanceCharge:
    id: str  # the instance-hours event's id without its end: the slice's deployment and start
    account: str  # as git names it
    deployment: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Billed:
    charged: int  # charges this call applied
    repeated: int  # charges applied already (a retried cycle)
    unknown: tuple[str, ...]  # accounts with no balance to draw on: their charges dropped
    pending: int  # charges left for the next cycle


def hour_price(pricing: object) -> Decimal:
    """The per-hour price a listing's `pricing` sets in the platform's currency; 0 for any
    other pricing (subscriptions and the rest are not charged by the hour)."""
    if isinstance(pricing, PerInstanceHourPricing) and pricing.currency == PLATFORM_CURRENCY:
        return pricing.per_hour
    return Decimal(0)


def instance_charges(events: Iterable[bytes], prices: HourPrices) -> list[InstanceCharge]:
    """The charges of instance-hours events (as the meter wrote them); events of listings
    not priced by the hour charge nothing and are left out."""
    charges: list[InstanceCharge] = []
    for raw in events:
        event = json.loads(raw)
        data = event["data"]
        ref = data.get("agent") or data.get("model")
        if ref is None:
            continue
        price = prices(ref["id"], ref["version"])
        amount = price * int(data["instance_seconds"]) / _HOUR
        if amount > 0:
            charge_id = str(event["id"]).rsplit("-", 1)[0]
            charges.append(InstanceCharge(charge_id, data["account"], event["subject"], amount))
    return charges


def pending_charges(state: Path) -> list[InstanceCharge]:
    """The charges written but not applied yet; a file that does not read is none (its
    charges are the royalties' to count still: the usage was spooled)."""
    try:
        raw = json.loads((state / PENDING).read_bytes())
        return [
            InstanceCharge(
                str(c["id"]), str(c["account"]), str(c["deployment"]), Decimal(c["amount"])
            )
            for c in raw
        ]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
        _log.warning("%s does not read, its charges are dropped: %s", state / PENDING, exc)
        return []


def _save(state: Path, charges: Sequence[InstanceCharge]) -> None:
    plain = [
        {"id": c.id, "account": c.account, "deployment": c.deployment, "amount": str(c.amount)}
        for c in charges
    ]
    state.mkdir(parents=True, exist_ok=True)
    write_atomically(state / PENDING, json.dumps(plain).encode())


def record_charges(state: Path, charges: Sequence[InstanceCharge]) -> None:
    """Add `charges` to the pending file (the largest per id), before the meter's clock
    moves."""
    if not charges:
        return
    merged = {c.id: c for c in pending_charges(state)}
    for charge in charges:
        if charge.id not in merged or merged[charge.id].amount < charge.amount:
            merged[charge.id] = charge
    _save(state, list(merged.values()))


def settle_charges(state: Path, credit: CreditStore, pseudonyms: Pseudonyms) -> Billed:
    """Apply the pending charges to the accounts' balances; what failed stays pending."""
    pending = pending_charges(state)
    if not pending:
        return Billed(0, 0, (), 0)
    charged = repeated = 0
    left: list[InstanceCharge] = []
    try:
        ids: Mapping[str, int] = credit.accounts_named({c.account for c in pending}, pseudonyms)
    except SQLAlchemyError as exc:
        _log.warning("instance time not charged yet, the accounts database fails: %s", exc)
        return Billed(0, 0, (), len(pending))
    unknown = sorted({c.account for c in pending if c.account not in ids})
    for name in unknown:
        _log.warning("account %s has no balance: its instance time is not charged", name)
    for charge in pending:
        account_id = ids.get(charge.account)
        if account_id is None:
            continue
        try:
            if credit.charge(account_id, charge.id, charge.amount, KIND) > 0:
                charged += 1
            else:
                repeated += 1
        except SQLAlchemyError as exc:
            _log.warning("instance time %s not charged yet: %s", charge.id, exc)
            left.append(charge)
    _save(state, left)
    return Billed(charged, repeated, tuple(unknown), len(left))
