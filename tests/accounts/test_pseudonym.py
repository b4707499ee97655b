"""Pseudonyms: stable, private to their key, blind to case, never the login; the key made
once, shared, and refused when others could read or change it."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.accounts import AccountStore, open_database
from formarket.accounts.pseudonym import (
    PSEUDONYM_PATTERN,
    Pseudonyms,
    is_pseudonym,
    key_path,
    load_pseudonyms,
)
from formarket.errors import InputError, UsageError
from formarket.schemas.usage import ACCOUNT_PATTERN

GITHUB_LOGIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?"
logins = st.from_regex(GITHUB_LOGIN, fullmatch=True)
# Every name an operator may give an account, down to one character.
names = st.from_regex(ACCOUNT_PATTERN, fullmatch=True)
keys = st.binary(min_size=16, max_size=64)


@given(keys, names)
def test_a_pseudonym_is_stable_and_has_its_shape(key: bytes, name: str) -> None:
    first = Pseudonyms(key).of(name)
    assert first == Pseudonyms(key).of(name) == Pseudonyms(bytes(key)).of(name)
    assert re.fullmatch(PSEUDONYM_PATTERN, first)
    assert re.fullmatch(ACCOUNT_PATTERN, first)  # what deployments and usage accept


@given(keys, keys, logins)
def test_another_key_gives_another_pseudonym(one: bytes, other: bytes, login: str) -> None:
    if one != other:
        assert Pseudonyms(one).of(login) != Pseudonyms(other).of(login)


@given(keys, logins, logins)
def test_two_logins_never_share_one(key: bytes, one: str, other: str) -> None:
    if one.lower() != other.lower():
        assert Pseudonyms(key).of(one) != Pseudonyms(key).of(other)


@given(keys, logins, st.data())
def test_case_does_not_matter_as_on_github(key: bytes, login: str, data: st.DataObject) -> None:
    flipped = "".join(
        c.swapcase() if data.draw(st.booleans(), label=f"flip {i}") else c
        for i, c in enumerate(login)
    )
    pseudonyms = Pseudonyms(key)
    assert pseudonyms.of(flipped) == pseudonyms.of(login) == pseudonyms.of(login.upper())
    assert pseudonyms.owns(pseudonyms.of(login), flipped)


@given(keys, names)
def test_a_pseudonym_never_is_nor_shows_the_login(key: bytes, name: str) -> None:
    if is_pseudonym(name):
        return  # a pseudonym names itself (tested below)
    pseudonym = Pseudonyms(key).of(name)
    assert pseudonym != name
    assert pseudonym.lower() != name.lower()
    # A login of a few letters may turn up among 26 random ones by chance, as in any text;
    # from six on that is one chance in fifty million, and a hyphen never does.
    if len(name) >= 6 or not re.fullmatch(r"[a-z2-7]*", name.lower()):
        assert name.lower() not in pseudonym.removeprefix("acct_")


@given(logins)
def test_no_github_login_looks_like_a_pseudonym(login: str) -> None:
    assert not is_pseudonym(login)


@given(keys, logins)
def test_an_account_owns_its_pseudonym_and_its_old_login_only(key: bytes, login: str) -> None:
    pseudonyms = Pseudonyms(key)
    mine = pseudonyms.of(login)
    assert pseudonyms.names(login) == {mine, login}
    assert pseudonyms.owns(mine, login)
    assert pseudonyms.owns(login, login)  # written before pseudonyms
    assert not pseudonyms.owns(pseudonyms.of(login + "x"), login)
    # The pseudonym itself, as a name (an agent's key, billed to its deployment's account),
    # owns that pseudonym and nothing else.
    assert pseudonyms.names(mine) == {mine}
    assert not pseudonyms.owns(login, mine)


def test_a_name_shaped_as_a_pseudonym_stands_for_itself() -> None:
    pseudonyms = Pseudonyms(b"k" * 32)
    shaped = "acct_" + "a" * 26
    assert pseudonyms.of(shaped) == shaped
    # Not quite the shape: hashed like any other name.
    for near in ("acct_" + "a" * 25, "acct_" + "a" * 27, "ACCT_" + "A" * 26, "acct-" + "a" * 26):
        assert pseudonyms.of(near) != near
        assert is_pseudonym(pseudonyms.of(near))


def test_the_key_never_shows() -> None:
    key = b"a secret key of thirty-two bytes"
    assert key.decode() not in repr(Pseudonyms(key))
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonyms(b"short")


def test_the_key_is_made_once_private_and_shared(tmp_path: Path) -> None:
    made: list[str] = []

    def load() -> None:
        made.append(load_pseudonyms(tmp_path / "gw", {}).of("ada"))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 1  # every part that raced to make it uses the one that won
    path = tmp_path / "gw" / "pseudonym.key"
    assert key_path(tmp_path / "gw", {}) == path
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["pseudonym.key"]
    assert load_pseudonyms(tmp_path / "gw", {}).of("ada") == made[0]


def test_the_setting_names_the_key(tmp_path: Path) -> None:
    shared = tmp_path / "etc" / "pseudonym.key"
    environ = {"FORMARKET_PSEUDONYM_KEY": str(shared)}
    assert key_path(tmp_path / "gw", environ) == shared
    one = load_pseudonyms(tmp_path / "gw", environ).of("ada")
    assert shared.exists()
    assert not (tmp_path / "gw").exists()
    assert load_pseudonyms(tmp_path / "other-gw", environ).of("ada") == one
    assert load_pseudonyms(tmp_path / "gw", {}).of("ada") != one


def test_a_key_others_may_read_or_change_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(os.urandom(32))
    environ = {"FORMARKET_PSEUDONYM_KEY": str(path)}
    for mode in (0o604, 0o620, 0o602):
        path.chmod(mode)
        with pytest.raises(UsageError, match="not a file that only its owner"):
            load_pseudonyms(tmp_path, environ)
    path.chmod(0o640)  # the group of the parts that share it may read it
    assert load_pseudonyms(tmp_path, environ).of("ada")


def test_a_short_a_linked_or_an_unmakeable_key_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"123")
    short.chmod(0o600)
    with pytest.raises(UsageError, match="too short"):
        load_pseudonyms(tmp_path, {"FORMARKET_PSEUDONYM_KEY": str(short)})
    link = tmp_path / "link.key"
    link.symlink_to(short)
    with pytest.raises(UsageError, match="cannot read"):
        load_pseudonyms(tmp_path, {"FORMARKET_PSEUDONYM_KEY": str(link)})
    folder = tmp_path / "folder.key"
    folder.mkdir()
    with pytest.raises(UsageError):
        load_pseudonyms(tmp_path, {"FORMARKET_PSEUDONYM_KEY": str(folder)})
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    with pytest.raises(UsageError, match="cannot make"):
        load_pseudonyms(blocked / "gw", {})


@pytest.mark.parametrize(
    "login",
    ["acct_" + "b" * 26, "acct_abcdefghijklmnopqrstuvwxyz"],
)
def test_no_one_signs_in_as_a_pseudonym(tmp_path: Path, login: str) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'accounts.sqlite'}")
    try:
        with pytest.raises(InputError, match="not a GitHub login"):
            AccountStore(engine).sign_in(login, 7)
        assert AccountStore(engine).sign_in("acct-" + "b" * 26, 8).login == "acct-" + "b" * 26
    finally:
        engine.dispose()
