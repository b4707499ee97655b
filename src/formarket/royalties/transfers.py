"""Sending a closed period's payouts: which payout lines are still to send, under which
idempotency key, and whether a record of transfers is one the close can stand behind.

    due(payouts, record) -> (Due, ...)      the lines to send now, each with its attempt
    check(record, payouts) -> [problem]     the record names only lines the close paid, with
                                            its amounts and destinations, attempts in order
    extends(old, new) -> problem | None     a later record only appends to an earlier one

A payout line is sent through the payment provider when the close paid it (status "paid") by
`stripe-connect`, to the connected account the publisher's payout terms named at the close.
Each attempt has its own idempotency key, `(period, publisher, currency, attempt)`: a run that
dies between the provider's answer and the commit sends the same attempt again, and the
provider answers it with the transfer it already made; an attempt the provider refused is in
git, so the next run makes attempt n + 1, with a new key (the provider keeps a refusal as the
answer to its key, as Stripe does; one that a dead run never recorded is answered again to the
next run, which records it, and the run after tries anew). A line with a sent attempt is never
sent again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from formarket.royalties.money import to_minor_exact
from formarket.schemas.transfers import TransferAttempt, Transfers
from formarket.schemas.usage import PayoutLine, Payouts

__all__ = [
    "PROVIDER_METHOD",
    "Due",
    "check",
    "due",
    "extends",
    "idempotency_key",
    "sent_through_provider",
    "transfer_group",
]

# The payout method whose payee is a connected account of the payment provider.
PROVIDER_METHOD = "stripe-connect"


def idempotency_key(period: str, publisher: str, currency: str, attempt: int) -> str:
    return f"formarket-payout/{period}/{publisher}/{currency}/{attempt}"


def transfer_group(period: str) -> str:
    """The provider's transfer group of a period's payouts: what a run lists to find a
    transfer whose answer it never recorded."""
    return f"royalties-{period}"


def sent_through_provider(line: PayoutLine) -> bool:
    return line.status == "paid" and line.method == PROVIDER_METHOD and bool(line.reference)


@dataclass(frozen=True, slots=True)
class Due:
    """A payout line to send now, as its `attempt`-th try."""

    period: str
    publisher: str
    currency: str
    amount: Decimal
    destination: str
    attempt: int

    @property
    def key(self) -> str:
        return idempotency_key(self.period, self.publisher, self.currency, self.attempt)

    @property
    def minor(self) -> int:
        """The amount in the currency's minor unit, as the provider takes it."""
        return to_minor_exact(self.amount, self.currency)


def _attempts_by_line(
    attempts: Iterable[TransferAttempt],
) -> dict[tuple[str, str], list[TransferAttempt]]:
    out: dict[tuple[str, str], list[TransferAttempt]] = {}
    for attempt in attempts:
        out.setdefault((attempt.publisher, attempt.currency), []).append(attempt)
    return out


def due(payouts: Payouts, record: Transfers | None) -> tuple[Due, ...]:
    """The lines of `payouts` to send through the provider that `record` holds no sent
    transfer for, each as the attempt after the last one recorded."""
    tried = _attempts_by_line(record.attempts if record is not None else ())
    out = []
    for line in payouts.lines:
        if not sent_through_provider(line):
            continue
        mine = tried.get((line.publisher, line.currency), [])
        if any(a.status == "sent" for a in mine):
            continue
        assert line.reference is not None  # sent_through_provider says so
        out.append(
            Due(
                payouts.period,
                line.publisher,
                line.currency,
                line.paid,
                line.reference,
                len(mine) + 1,
            )
        )
    return tuple(out)


def check(record: Transfers, payouts: Payouts) -> list[str]:
    """What is wrong with `record` as the transfers of `payouts`; [] when nothing is. Each
    problem names the attempt by its place in the file (from 1)."""
    problems = []
    if record.period != payouts.period:
        problems.append(f"its period is {record.period}, not {payouts.period}")
    lines = {(line.publisher, line.currency): line for line in payouts.lines}
    seen: dict[tuple[str, str], list[TransferAttempt]] = {}
    references: dict[str, int] = {}
    for number, attempt in enumerate(record.attempts, 1):
        name = f"attempt {number} ({attempt.publisher} {attempt.currency} try {attempt.attempt})"
        line = lines.get((attempt.publisher, attempt.currency))
        before = seen.setdefault((attempt.publisher, attempt.currency), [])
        if line is None or not sent_through_provider(line):
            problems.append(f"{name}: the close sent no payout to this publisher and currency")
        else:
            if attempt.amount != line.paid:
                problems.append(f"{name}: amount {attempt.amount}, the close paid {line.paid}")
            if attempt.destination != line.reference:
                problems.append(
                    f"{name}: destination {attempt.destination}, the close named {line.reference}"
                )
        if attempt.attempt != len(before) + 1:
            problems.append(f"{name}: comes after {len(before)} tries of this line")
        expected = idempotency_key(
            record.period, attempt.publisher, attempt.currency, attempt.attempt
        )
        if attempt.idempotency_key != expected:
            problems.append(
                f"{name}: idempotency key {attempt.idempotency_key!r}, not {expected!r}"
            )
        if any(a.status == "sent" for a in before):
            problems.append(f"{name}: the line was already sent")
        if attempt.reference is not None:
            if attempt.reference in references:
                problems.append(
                    f"{name}: transfer {attempt.reference} is attempt"
                    f" {references[attempt.reference]}'s too"
                )
            references.setdefault(attempt.reference, number)
        before.append(attempt)
    return problems


def extends(old: Transfers, new: Transfers) -> str | None:
    """None when `new` keeps every attempt of `old` as it was and only adds after them; what
    changed otherwise."""
    if new.period != old.period:
        return f"its period changed from {old.period} to {new.period}"
    kept = new.attempts[: len(old.attempts)]
    for number, (was, now) in enumerate(zip(old.attempts, kept, strict=False), 1):
        if was != now:
            return f"attempt {number} ({was.publisher} {was.currency}) was rewritten"
    if len(kept) < len(old.attempts):
        return f"attempts {len(kept) + 1} to {len(old.attempts)} were removed"
    return None
