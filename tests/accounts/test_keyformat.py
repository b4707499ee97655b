"""The key's form, as hypothesis draws it and mangles it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from formarket.accounts.keyformat import hash_secret, new_key, parse_key, secret_matches


def test_a_new_key_parses_to_its_id_and_secret() -> None:
    key, key_id, secret = new_key()
    assert parse_key(key) == (key_id, secret)
    assert secret_matches(hash_secret(secret), secret)


@given(st.text(max_size=120))
def test_parsing_never_fails_and_finds_only_well_formed_keys(text: str) -> None:
    parsed = parse_key(text)
    if parsed is not None:
        key_id, secret = parsed
        assert text == f"fmk_{key_id}_{secret}"
        assert len(key_id) == 12
        assert len(secret) == 43


@given(st.integers(min_value=0, max_value=200), st.characters())
def test_any_one_character_changed_or_added_is_another_key(at: int, char: str) -> None:
    key, key_id, secret = new_key()
    index = at % len(key)
    changed = key[:index] + char + key[index + 1 :]
    added = key[:index] + char + key[index:]
    for other in (changed, added, key + "\n", " " + key):
        parsed = parse_key(other)
        if other != key and parsed is not None:
            assert parsed != (key_id, secret)
