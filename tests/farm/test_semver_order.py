"""The order of published versions (the newest one an upgrade picks): semver's, where a
pre-release comes before its release and numbers compare as numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from formarket.farm.versions import semver_key

_number = st.integers(0, 30)
_pre = st.lists(st.from_regex(r"\A(0|[1-9][0-9]?|[a-z]{1,5})\Z"), min_size=1, max_size=3)
_versions = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{'.'.join(pre)}" if pre else ""),
    _number,
    _number,
    _number,
    st.none() | _pre,
)


def test_known_orders() -> None:
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0", "1.2.0", "1.10.0"]
    shuffled = ["1.10.0", "1.0.0", "0.9.0", "1.0.0-beta", "1.2.0", "1.0.0-alpha.1", "1.0.0-alpha"]
    assert sorted(shuffled, key=semver_key) == ordered


@given(_versions, _versions)
def test_the_core_numbers_decide_first(a: str, b: str) -> None:
    core_a = tuple(int(x) for x in a.split("-")[0].split("."))
    core_b = tuple(int(x) for x in b.split("-")[0].split("."))
    if core_a != core_b:
        assert (semver_key(a) < semver_key(b)) == (core_a < core_b)
    elif "-" in a and "-" not in b:
        assert semver_key(a) < semver_key(b)


@given(st.text(max_size=20))
def test_any_text_sorts_without_error(text: str) -> None:
    assert isinstance(semver_key(text), tuple)
