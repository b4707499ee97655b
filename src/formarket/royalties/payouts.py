"""Payouts: what each publisher is owed at the close of a period, and what is paid now.

A publisher's balance in a currency carries from one close to the next. Earnings are held for
the policy's hold period (refunds and disputes can come in meanwhile); what is neither held nor
below the payout threshold is paid, less the payout fee, and the payout is posted to the ledger,
so the balance drops by exactly what left. A negative balance is never paid: it is carried and
taken from later earnings. Currencies are never mixed: each (publisher, currency) is its own
account, paid in its own currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from formarket.royalties.money import from_minor, to_minor_exact
from formarket.schemas.publisher import Payout
from formarket.schemas.usage import HeldAmount, PayoutLine, RoyaltyPolicy
from formarket.usage.files import month_index

__all__ = ["Balance", "payouts", "prior_balances"]


@dataclass(frozen=True, slots=True)
class Balance:
    """Minor units owed, and the earnings still held, by the period they were earned in."""

    amount: int
    held: tuple[tuple[str, int], ...] = ()


def prior_balances(lines: tuple[PayoutLine, ...]) -> dict[tuple[str, str], Balance]:
    """The balances a previous close carried forward, from its payout lines."""
    return {
        (line.publisher, line.currency): Balance(
            to_minor_exact(line.closing_balance, line.currency),
            tuple((h.period, to_minor_exact(h.amount, line.currency)) for h in line.held),
        )
        for line in lines
    }


def payouts(
    period: str,
    earned: Mapping[tuple[str, str], int],
    prior: Mapping[tuple[str, str], Balance],
    policy: RoyaltyPolicy,
    methods: Mapping[str, Payout | None],
) -> tuple[PayoutLine, ...]:
    """One line per (publisher, currency) with a balance, earnings or holds."""
    now = month_index(period)
    lines = []
    for publisher, currency in sorted(set(earned) | set(prior)):
        before = prior.get((publisher, currency), Balance(0))
        gain = earned.get((publisher, currency), 0)
        if not gain and not before.amount and not before.held:
            continue
        held = [
            (when, units)
            for when, units in before.held
            if now - month_index(when) < policy.hold_periods
        ]
        if gain > 0 and policy.hold_periods > 0:
            held.append((period, gain))
        balance = before.amount + gain
        due = balance - sum(units for _, units in held)
        terms = policy.currencies.get(currency)
        method = methods.get(publisher)
        paid = fee = 0
        if terms is None:
            status = "no-terms-for-currency"
        elif due <= 0:
            status = "negative-balance" if balance < 0 else "nothing-due"
        elif method is None or method.method == "none":
            status = "no-payout-method"
        elif due < to_minor_exact(terms.payout_threshold, currency):
            status = "below-threshold"
        else:
            fee = to_minor_exact(terms.payout_fee, currency)
            paid = due - fee
            status = "paid"
        lines.append(
            PayoutLine(
                publisher=publisher,
                currency=currency,
                opening_balance=from_minor(before.amount, currency),
                earned=from_minor(gain, currency),
                held=tuple(
                    HeldAmount(period=when, amount=from_minor(units, currency))
                    for when, units in held
                ),
                due=from_minor(max(due, 0), currency),
                paid=from_minor(paid, currency),
                fee=from_minor(fee, currency),
                closing_balance=from_minor(balance - paid - fee, currency),
                status=status,
                method=method.method if method is not None else None,
                reference=method.reference if status == "paid" and method is not None else None,
            )
        )
    return tuple(lines)
