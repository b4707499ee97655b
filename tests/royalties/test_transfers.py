"""Which payout lines are due to send, and whether a record of transfers is one the close
stands behind: any run of refusals and transfers the bot records checks clean, and any edit
to what it recorded does not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.royalties.transfers import check, due, extends, idempotency_key
from formarket.schemas.transfers import TransferAttempt, Transfers
from formarket.schemas.usage import PayoutLine, Payouts, PolicyRef

PERIOD = "2026-04"
AT = datetime(2026, 5, 6, tzinfo=UTC)


def _line(publisher: str, currency: str, paid: str, method: str, status: str) -> PayoutLine:
    amount = Decimal(paid)
    return PayoutLine(
        publisher=publisher,
        currency=currency,
        opening_balance=Decimal(0),
        earned=amount,
        held=(),
        due=amount,
        paid=amount,
        fee=Decimal(0),
        closing_balance=Decimal(0),
        status=status,  # type: ignore[arg-type]
        method=method,
        reference=f"acct_{publisher.replace('-', '')}" if status == "paid" else None,
    )


PAYOUTS = Payouts(
    period=PERIOD,
    policy=PolicyRef(version=1, commit="b" * 40),
    lines=(
        _line("alpha", "USD", "30.00", "stripe-connect", "paid"),
        _line("alpha", "EUR", "41.50", "stripe-connect", "paid"),
        _line("beta", "USD", "99.99", "stripe-connect", "paid"),
        _line("gamma", "USD", "50.00", "paypal", "paid"),
        _line("delta", "USD", "0.00", "stripe-connect", "below-threshold"),
    ),
)


def _record(answers: list[list[bool]]) -> Transfers:
    """The record of runs in which the provider sent (True) or refused (False) each line
    still due, in order; a run's list is cut to the lines due in it."""
    record = Transfers(period=PERIOD, attempts=())
    count = 0
    for run in answers:
        made = []
        for item, sent in zip(due(PAYOUTS, record), run, strict=False):
            count += 1
            made.append(
                TransferAttempt(
                    publisher=item.publisher,
                    currency=item.currency,
                    amount=item.amount,
                    destination=item.destination,
                    attempt=item.attempt,
                    idempotency_key=item.key,
                    status="sent" if sent else "failed",
                    reference=f"tr_{count}" if sent else None,
                    reason=None if sent else "insufficient funds",
                    at=AT,
                )
            )
        record = record.model_copy(update={"attempts": (*record.attempts, *made)})
    return record


_RUNS = st.lists(st.lists(st.booleans(), max_size=3), max_size=6)


def test_only_lines_paid_by_stripe_connect_are_due() -> None:
    items = due(PAYOUTS, None)
    assert [(i.publisher, i.currency, i.attempt) for i in items] == [
        ("alpha", "USD", 1),
        ("alpha", "EUR", 1),
        ("beta", "USD", 1),
    ]
    assert items[1].minor == 4150
    assert items[0].key == idempotency_key(PERIOD, "alpha", "USD", 1)


@settings(max_examples=200)
@given(_RUNS)
def test_any_run_of_refusals_and_transfers_checks_clean_and_sends_each_line_once(
    runs: list[list[bool]],
) -> None:
    record = _record(runs)
    assert check(record, PAYOUTS) == []
    sent = [(a.publisher, a.currency) for a in record.attempts if a.status == "sent"]
    assert len(sent) == len(set(sent))
    # What is still due is exactly what was never sent, each as its next try.
    left = {(i.publisher, i.currency): i.attempt for i in due(PAYOUTS, record)}
    tries: dict[tuple[str, str], int] = {}
    for a in record.attempts:
        tries[(a.publisher, a.currency)] = a.attempt
    assert set(left) == {("alpha", "USD"), ("alpha", "EUR"), ("beta", "USD")} - set(sent)
    assert all(left[k] == tries.get(k, 0) + 1 for k in left)
    # Keys never repeat: a refusal the provider keeps as a key's answer is never asked again.
    keys = [a.idempotency_key for a in record.attempts]
    assert len(keys) == len(set(keys))


_EDITS = {
    "amount": Decimal("1000.00"),
    "destination": "acct_someone_else",
    "attempt": 7,
    "idempotency_key": "formarket-payout/other",
    "publisher": "gamma",
    "currency": "JPY",
}


@settings(max_examples=200)
@given(_RUNS, st.sampled_from(sorted(_EDITS)), st.data())
def test_any_edit_of_a_recorded_attempt_is_found(
    runs: list[list[bool]], field: str, data: st.DataObject
) -> None:
    record = _record([[False], *runs])  # at least one attempt
    at = data.draw(st.integers(0, len(record.attempts) - 1))
    attempts = list(record.attempts)
    attempts[at] = attempts[at].model_copy(update={field: _EDITS[field]})
    edited = record.model_copy(update={"attempts": tuple(attempts)})
    assert check(edited, PAYOUTS), f"{field} of attempt {at + 1} edited"
    assert extends(record, edited) is not None


@given(_RUNS, st.data())
def test_a_record_extends_exactly_its_prefixes(runs: list[list[bool]], data: st.DataObject) -> None:
    record = _record(runs)
    cut = data.draw(st.integers(0, len(record.attempts)))
    shorter = record.model_copy(update={"attempts": record.attempts[:cut]})
    assert extends(shorter, record) is None
    if cut < len(record.attempts):
        assert extends(record, shorter) is not None


def test_a_second_sent_transfer_for_a_line_is_found() -> None:
    record = _record([[True, True, True]])
    again = record.attempts[0].model_copy(
        update={"attempt": 2, "idempotency_key": idempotency_key(PERIOD, "alpha", "USD", 2)}
    )
    twice = record.model_copy(update={"attempts": (*record.attempts, again)})
    problems = check(twice, PAYOUTS)
    assert any("already sent" in p for p in problems)
    assert any("tr_1" in p for p in problems)
    assert check(record.model_copy(update={"period": "2026-05"}), PAYOUTS)
