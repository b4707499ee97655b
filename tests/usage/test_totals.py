"""Totals as columns add up as dictionaries of named groups do: merged from any parts,
pickled out of their process, negated, numbered by one shared table or by their own."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import FormarketError
from formarket.usage.totals import KEYS, SUMS, Name, Sums, Totals, TotalsKey, merge

_NAMES: list[Name] = [None, ("chat", "1.0.0"), ("chat", "1.1.0"), ("faq-bot", "0.2.0")]
_PAYERS = ["", "acct-a", "acct-b"]

# Months and days from small to far beyond what one int64 key can hold together, so that
# both ways of sorting the rows are taken.
_keys = st.tuples(
    st.booleans(),
    st.one_of(st.integers(24_000, 24_400), st.integers(0, 1 << 40)),
    st.one_of(st.just(0), st.integers(739_000, 739_100), st.integers(0, 1 << 40)),
    st.sampled_from(_NAMES),
    st.sampled_from(_NAMES),
    st.booleans(),
    st.sampled_from(_PAYERS),
)
_sums = st.lists(st.integers(-(1 << 40), 1 << 40), min_size=SUMS, max_size=SUMS)
_named = st.dictionaries(_keys, _sums, max_size=12)


def _of(named: dict[TotalsKey, Sums]) -> Totals:
    """The totals of named groups, as `Totals.named` gives them back."""
    names: dict[Name, int] = {None: 0}
    payers: dict[str, int] = {"": 0}
    rows = [
        (
            before,
            month,
            day,
            names.setdefault(agent, len(names)),
            names.setdefault(model, len(names)),
            ok,
            payers.setdefault(payer, len(payers)),
        )
        for before, month, day, agent, model, ok, payer in named
    ]
    return Totals(
        list(names),
        list(payers),
        np.ascontiguousarray(np.array(rows, np.int64).reshape(-1, KEYS).T),
        np.ascontiguousarray(np.array(list(named.values()), np.int64).reshape(-1, SUMS).T),
    )


def _added(parts: list[dict[TotalsKey, Sums]]) -> dict[TotalsKey, Sums]:
    out: dict[TotalsKey, Sums] = {}
    for part in parts:
        for key, sums in part.items():
            found = out.setdefault(key, [0] * SUMS)
            found[:] = [a + b for a, b in zip(found, sums, strict=True)]
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_named, max_size=5))
def test_merged_totals_are_the_sums_of_their_parts(parts: list[dict[TotalsKey, Sums]]) -> None:
    merged = merge([_of(p) for p in parts])
    assert merged.named() == _added(parts)
    assert len(merged) == len(_added(parts))
    # Out of the process and back, and merged again with itself: twice each sum.
    again = pickle.loads(pickle.dumps(merged))
    assert again.named() == merged.named()
    doubled = merge([merged, again]).named()
    assert doubled == {k: [2 * v for v in sums] for k, sums in merged.named().items()}
    # Taken back: every group still there, at zero.
    assert all(not any(s) for s in merge([merged, merged.negated()]).named().values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(_keys, _sums), max_size=8), max_size=4))
def test_rows_numbered_by_one_table_merge_as_named_rows(
    files: list[list[tuple[TotalsKey, Sums]]],
) -> None:
    """Within a process every file's rows point into the reading's tables, which only grow;
    rows may repeat a key until they are summed."""
    names: list[Name] = list(_NAMES)
    payers = list(_PAYERS)
    parts = []
    for rows in files:
        keys = [
            (b, m, d, names.index(agent), names.index(model), ok, payers.index(payer))
            for (b, m, d, agent, model, ok, payer), _ in rows
        ]
        parts.append(
            Totals.summed(
                names,
                payers,
                np.array(keys, np.int64).reshape(-1, 7).T.copy(),
                np.array([s for _, s in rows], np.int64).reshape(-1, SUMS).T.copy(),
            )
        )
    expected = _added([_added([{k: s}]) for rows in files for k, s in rows])
    merged = merge(parts)
    assert merged.named() == expected
    assert merged.names is names or not expected  # no renumbering needed
    # Mixed with a part of its own numbering (as read from the cache).
    own = pickle.loads(pickle.dumps(merged))
    assert merge([*parts, own]).named() == {k: [2 * v for v in s] for k, s in expected.items()}


def test_a_pickled_totals_takes_only_the_names_its_rows_use() -> None:
    names: list[Name] = [None, *((f"listing-{i}", "1.0.0") for i in range(10_000))]
    keys = np.array([[0, 24_300, 0, 0, 7, 1, 0], [0, 24_300, 0, 9_999, 7, 1, 0]], np.int64).T.copy()
    totals = Totals(names, [""], keys, np.ones((SUMS, 2), np.int64))
    small = pickle.loads(pickle.dumps(totals))
    assert small.names == [None, ("listing-6", "1.0.0"), ("listing-9998", "1.0.0")]
    assert small.named() == totals.named()


def test_sums_past_64_bits_are_refused_not_wrapped() -> None:
    keys = np.zeros((7, 10), np.int64)
    near = np.full((SUMS, 10), 1 << 60, np.int64)
    with pytest.raises(FormarketError, match="64-bit"):
        Totals.summed([None], [""], keys, near)
    # Far below the bound, many rows merge as they are.
    small = np.full((SUMS, 10), 10**12, np.int64)
    assert Totals.summed([None], [""], keys, small).sums[:, 0].tolist() == [10**13] * SUMS
