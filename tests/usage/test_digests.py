"""Events' key digests: one (source, id) has one digest, whatever is digested beside it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from formarket.schemas.usage import EVENT_ID_PATTERN
from formarket.usage.digests import key_digests

ids = st.from_regex(EVENT_ID_PATTERN, fullmatch=True)
sources = st.sampled_from(("gateway/gw-1", "gateway/gw-2", "farm/meter-1"))


@given(sources, st.lists(ids, min_size=1, max_size=20), st.integers(0, 2**64 - 1))
def test_a_digest_depends_on_its_key_and_seed_alone(
    source: str, batch: list[str], seed: int
) -> None:
    together = key_digests(source, batch, seed).tolist()
    alone = [key_digests(source, [ident], seed)[0] for ident in batch]
    assert together == alone


def test_source_id_and_seed_each_change_the_digest() -> None:
    base = key_digests("gateway/gw-1", ["gw-1-20260101-000001206"], 7)[0]
    assert key_digests("gateway/gw-2", ["gw-1-20260101-000001206"], 7)[0] != base
    assert key_digests("gateway/gw-1", ["gw-1-20260101-000001207"], 7)[0] != base
    assert key_digests("gateway/gw-1", ["gw-1-20260101-000001206"], 8)[0] != base
    # A shorter id is not the longer one with its padding.
    assert key_digests("gateway/gw-1", ["a"], 7)[0] != key_digests("gateway/gw-1", ["a" * 8], 7)[0]
