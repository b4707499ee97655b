"""The money rules as properties, over generated price books and usage logs."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from formarket.royalties.ledger import balances, payable, payout_transactions
from formarket.royalties.money import MINOR_UNITS, allocate, from_minor, round_to_minor
from formarket.royalties.payouts import Balance, payouts
from formarket.schemas.publisher import Payout
from formarket.schemas.usage import LedgerEntry, LedgerTransaction
from formarket.usage.wire import canonical_digest, validate_line
from tests.royalties.helpers import (
    POLICY,
    Offer,
    call,
    close,
    gz,
    line,
    listed,
    money_files,
    usage_file,
)
from tests.royalties.strategies import files_of, offer_lists, usage

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw: st.DrawFn, months: tuple[int, ...] = (3,)) -> tuple[Any, list[dict[str, Any]]]:
    offers = draw(offer_lists())
    return listed(offers), draw(usage(offers, months=months))


# 1. an event counted k times yields byte-identical statements and ledger to counting it once
@PROPERTY
@given(scenarios(), st.data())
def test_repeated_events_count_once(scenario: Any, data: st.DataObject) -> None:
    listings, events = scenario
    once = close(files_of(events), listings)[1]
    repeated = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=5))
    copies = data.draw(st.integers(1, 3))
    files = files_of(events)
    for k in range(copies):
        for i, event in enumerate(repeated):
            files[usage_file(event["time"][:10], event["source"], 100 + k * 10 + i)] = gz(
                [line(event)]
            )
    closing, again = close(files, listings)
    assert money_files(again) == money_files(once)
    assert closing.summary.counts.duplicates == copies * len(repeated)
    assert closing.summary.counts.conflicts == 0


def _digest(event: dict[str, Any]) -> bytes:
    decoded = validate_line(line(event))
    assert not isinstance(decoded, str), decoded
    return canonical_digest(decoded)


# 2. the same id with different content is counted once, as first committed, and reported
# with both contents: a later copy never changes the result, whatever its bytes or its path
@PROPERTY
@given(scenarios(), st.data())
def test_conflicting_copies_count_once_and_are_reported(scenario: Any, data: st.DataObject) -> None:
    listings, events = scenario
    index = data.draw(st.integers(0, len(events) - 1))
    original = events[index]
    variant = json.loads(json.dumps(original))
    variant["data"]["duration_ms"] += data.draw(st.integers(1, 1000))
    if variant["type"] == "dev.formarket.usage.call":
        variant["data"]["output_tokens"] = data.draw(st.integers(0, 10**6))
    # Sequence 0 sorts before every file of the first commit: commit order decides, not path.
    later = {usage_file(original["time"][:10], original["source"], 0): gz([line(variant)])}
    closing, rendered = close(files_of(events), listings, later=later)
    expected = close(files_of(events), listings)[1]
    assert money_files(rendered) == money_files(expected)
    conflicts = closing.summary.conflicts
    assert [(c.source, c.id) for c in conflicts] == [(original["source"], original["id"])]
    [conflict] = conflicts
    assert conflict.ignored == (f"{next(iter(later))}:1",)
    contents = {json.loads(text)["data"]["duration_ms"] for text in conflict.contents.values()}
    assert contents == {original["data"]["duration_ms"], variant["data"]["duration_ms"]}
    assert closing.summary.counts.duplicates == 1


# 3. any order of the same logs yields identical results
@PROPERTY
@given(scenarios(), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_order_of_logs_does_not_matter(scenario: Any, seed: int, pieces: int) -> None:
    listings, events = scenario
    first, a = close(files_of(events), listings)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    second, b = close(files_of(shuffled, seed=seed, pieces=pieces), listings)
    assert money_files(a) == money_files(b)
    assert first.summary.totals == second.summary.totals
    counts_a = first.summary.counts.model_copy(update={"files": 0, "lines": 0})
    counts_b = second.summary.counts.model_copy(update={"files": 0, "lines": 0})
    assert counts_a == counts_b


# 4. creator + platform = gross for every charge; every transaction sums to zero
@PROPERTY
@given(scenarios())
def test_every_charge_splits_exactly_and_every_transaction_balances(scenario: Any) -> None:
    listings, events = scenario
    closing, _ = close(files_of(events), listings)
    for statement in closing.statements:
        for block in statement.currencies:
            for ln in block.lines:
                assert ln.creator + ln.platform == ln.gross
                assert ln.creator >= 0
                assert ln.platform >= 0
    for transaction in closing.ledger:
        assert sum((e.amount for e in transaction.entries), Decimal(0)) == 0
        assert len({e.account for e in transaction.entries}) == len(transaction.entries)


# 5. splits sum to the amount, each part within one minor unit of the exact pro-rata value,
#    independent of input order
@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=3),
        st.fractions(min_value=0, max_value=1000, max_denominator=10**6),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_allocation(total: int, weights: dict[str, Fraction], rnd: random.Random) -> None:
    if sum(weights.values()) == 0:
        weights = {**weights, "z": Fraction(1)}
    parts = allocate(total, weights)
    assert sum(parts.values()) == total
    whole = sum(weights.values())
    for name, part in parts.items():
        assert abs(part - total * weights[name] / whole) < 1
    items = list(weights.items())
    rnd.shuffle(items)
    assert allocate(total, dict(items)) == parts


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def _no_float(text: str) -> Any:
    raise AssertionError(f"a float in the output: {text}")


# 6. no floats anywhere; a statement's total is the sum of its rounded lines
@PROPERTY
@given(scenarios())
def test_no_floats_and_totals_are_sums_of_lines(scenario: Any) -> None:
    listings, events = scenario
    closing, rendered = close(files_of(events), listings)
    documents = [closing.summary, closing.payouts, *closing.statements, *closing.ledger]
    assert not any(isinstance(v, float) for doc in documents for v in _walk(doc))
    for path, data in rendered.items():
        if path.endswith(".json"):
            json.loads(data, parse_float=_no_float)
        elif path.endswith(".jsonl"):
            for row in data.splitlines():
                json.loads(row, parse_float=_no_float)
    for statement in closing.statements:
        for block in statement.currencies:
            assert block.gross == sum((ln.gross for ln in block.lines), Decimal(0))
            assert block.creator == sum((ln.creator for ln in block.lines), Decimal(0))
            assert block.platform == sum((ln.platform for ln in block.lines), Decimal(0))
            places = MINOR_UNITS[block.currency]
            for ln in block.lines:
                assert -ln.gross.as_tuple().exponent == places  # type: ignore[operator]


# 7. an event belongs to the period of its event time
@PROPERTY
@given(st.data())
def test_events_belong_to_the_period_of_their_time(data: st.DataObject) -> None:
    offers = data.draw(offer_lists())
    events = data.draw(usage(offers, months=(1, 2, 3, 4)))
    closing, _ = close(files_of(events), listed(offers), period="2026-03")
    counts = closing.summary.counts
    by_month = [int(e["time"][5:7]) for e in events]
    assert counts.counted == by_month.count(3)
    assert counts.adjustments == by_month.count(1) + by_month.count(2)
    assert counts.later == by_month.count(4)
    for statement in closing.statements:
        for block in statement.currencies:
            for ln in block.lines:
                assert (ln.kind == "usage") == (ln.usage_period == "2026-03")


# 8. a price change in a new version never re-rates usage served by the old version
@PROPERTY
@given(
    st.integers(1, 10**9),
    st.integers(1, 10**9),
    # Up to the terms' ceiling of input tokens per call: above it is set aside (USG018).
    st.integers(0, POLICY.ceilings.input_tokens),
    st.integers(0, POLICY.ceilings.input_tokens),
    st.sampled_from(("USD", "JPY", "EUR")),
)
def test_new_version_prices_never_rerate_old_usage(
    old_price: int, new_price: int, old_tokens: int, new_tokens: int, currency: str
) -> None:
    def offer(version: str, units: int) -> Offer:
        price = format(Decimal(units).scaleb(-4), "f")
        pricing = {
            "model": "per_token",
            "currency": currency,
            "input_per_million": price,
            "output_per_million": "0",
        }
        return Offer("model", "acme/chat", version, pricing, "70")

    listings = listed([offer("1.0.0", old_price)], [offer("1.1.0", new_price)])
    events = [
        {**_call("old", "1.0.0", old_tokens)},
        {**_call("new", "1.1.0", new_tokens)},
    ]
    closing, _ = close(files_of(events), listings)
    lines = {
        ln.version: ln
        for s in closing.statements
        for b in s.currencies
        for ln in b.lines
        if ln.metric == "input_tokens"
    }
    for version, tokens, units in (
        ("1.0.0", old_tokens, old_price),
        ("1.1.0", new_tokens, new_price),
    ):
        if tokens == 0:
            assert version not in lines
            continue
        exact = tokens * Fraction(units, 10**4) / 10**6
        expected = from_minor(round_to_minor(exact, currency, POLICY.rounding), currency)
        assert lines[version].gross == expected


def _call(ident: str, version: str, tokens: int) -> dict[str, Any]:
    return call(ident, model=("acme/chat", version), input_tokens=tokens, output_tokens=0)


# 9. a balance is the sum of ledger entries; payouts never pay twice; under the threshold,
#    amounts carry forward
@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-3000, 20_000), min_size=1, max_size=8),
    st.integers(0, 3),
    st.sampled_from(("USD", "JPY")),
)
def test_payouts_follow_the_ledger(earnings: list[int], hold: int, currency: str) -> None:
    policy = POLICY.model_copy(update={"hold_periods": hold})
    methods = {"acme": Payout(method="bank-transfer", reference="acme-1")}
    ledger: list[LedgerTransaction] = []
    prior: dict[tuple[str, str], Balance] = {}
    terms = policy.currencies[currency]
    threshold = int(terms.payout_threshold.scaleb(MINOR_UNITS[currency]))
    for month, units in enumerate(earnings, 1):
        period = f"2026-{month:02d}"
        if units:
            amount = from_minor(units, currency)
            ledger.append(
                LedgerTransaction(
                    id=f"{period}/usage",
                    period=period,
                    kind="usage" if units > 0 else "adjustment",
                    currency=currency,
                    entries=(
                        LedgerEntry(account="receivable:usage", amount=amount),
                        LedgerEntry(account=payable("acme"), amount=-amount),
                    ),
                )
            )
        earned = {("acme", currency): units}
        lines = payouts(period, earned, prior, policy, methods)
        ledger.extend(payout_transactions(period, lines))
        (paid_line,) = lines if lines else (None,)
        owed = -balances(ledger).get((payable("acme"), currency), Decimal(0))
        if paid_line is None:
            assert owed == 0
            continue
        assert paid_line.closing_balance == owed
        if paid_line.status == "below-threshold":
            assert paid_line.closing_balance == paid_line.opening_balance + paid_line.earned
            assert paid_line.due < from_minor(threshold, currency)
        held = sum((h.amount for h in paid_line.held), Decimal(0))
        if paid_line.status == "paid":
            assert paid_line.closing_balance == held
        state = {
            ("acme", currency): Balance(
                int(paid_line.closing_balance.scaleb(MINOR_UNITS[currency])),
                tuple(
                    (h.period, int(h.amount.scaleb(MINOR_UNITS[currency]))) for h in paid_line.held
                ),
            )
        }
        again = payouts(period, {}, state, policy, methods)
        assert all(line_.paid == 0 for line_ in again)
        prior = state
