"""Accounts, keys and sessions on SQLite and PostgreSQL; one account never reaches another's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from formarket.accounts import AccountStore, open_database
from formarket.errors import NotFoundError, UsageError


def test_opening_upgrades_the_database_once(db_url: str) -> None:
    first = open_database(db_url)
    tables = set(inspect(first).get_table_names())
    assert {"accounts", "api_keys", "sessions", "generation", "alembic_version"} <= tables
    first.dispose()
    # A second open finds it at the newest revision and keeps what is in it.
    store = AccountStore(open_database(db_url))
    store.sign_in("alice", 1)
    again = AccountStore(open_database(db_url))
    assert again.account("alice") is not None
    store.engine.dispose()
    again.engine.dispose()


def test_a_key_is_shown_once_and_stored_hashed(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    key, view = store.create_key(alice, name="laptop")
    assert key.startswith(f"fmk_{view.id}_")
    assert view.last4 == key[-4:]
    assert view.shown.endswith(key[-4:])
    with store.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_keys"))
    assert key.split("_", 2)[2] not in dump
    grant = store.authenticate(key)
    assert grant is not None
    assert (grant.account, grant.deployment) == ("alice", None)
    assert [k.id for k in store.keys(alice)] == [view.id]


def test_a_wrong_secret_or_form_is_refused(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    key, _ = store.create_key(alice)
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.authenticate(wrong) is None
    assert store.authenticate(key + "\n") is None
    assert store.authenticate("") is None
    assert store.authenticate("fmk_000000000000_" + "a" * 43) is None


def test_a_revoked_key_is_refused_and_the_generation_moves(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    key, view = store.create_key(alice)
    before = store.generation()
    revoked = store.revoke_key(alice, view.id)
    assert revoked.revoked_at is not None
    assert store.authenticate(key) is None
    assert store.generation() == before + 1
    # Revoking again changes nothing.
    store.revoke_key(alice, view.id)
    assert store.generation() == before + 1


def test_expiry(db_url: str) -> None:
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    store = AccountStore(open_database(db_url), clock=lambda: now[0])
    alice = store.sign_in("alice", 1)
    key, view = store.create_key(alice, expires_at=now[0] + timedelta(hours=1))
    assert view.expires_at == now[0] + timedelta(hours=1)
    assert store.authenticate(key) is not None
    now[0] += timedelta(hours=1)
    assert store.authenticate(key) is None
    with pytest.raises(UsageError):
        store.create_key(alice, expires_at=now[0] - timedelta(seconds=1))
    with pytest.raises(UsageError):
        store.create_key(alice, expires_at=datetime(2027, 1, 1))  # no zone
    store.engine.dispose()


def test_a_key_scoped_to_one_deployment(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    key, _ = store.create_key(alice, deployment="echo-1")
    grant = store.authenticate(key)
    assert grant is not None
    assert grant.deployment == "echo-1"
    with pytest.raises(UsageError):
        store.create_key(alice, deployment="../etc")


def test_another_accounts_key_is_as_good_as_missing(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    mallory = store.sign_in("mallory", 2)
    key, view = store.create_key(alice)
    for key_id in (view.id, view.id.upper(), f"{view.id}' OR '1'='1", "", "x" * 5000):
        with pytest.raises(NotFoundError):
            store.revoke_key(mallory, key_id)
        with pytest.raises(NotFoundError):
            store.key(mallory, key_id)
    assert store.keys(mallory) == []
    assert store.authenticate(key) is not None  # untouched


def test_sign_in_follows_githubs_id_through_renames(store: AccountStore) -> None:
    first = store.sign_in("alice", 1)
    renamed = store.sign_in("alice-renamed", 1)
    assert renamed.id == first.id
    # Someone else takes the freed login: a new account; the old one keeps its own.
    taker = store.sign_in("alice-renamed", 9)
    assert taker.id != first.id
    assert store.account("alice-renamed") == taker
    with pytest.raises(Exception, match="GitHub login"):
        store.sign_in("not a login", 3)


def test_sessions(db_url: str) -> None:
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    store = AccountStore(open_database(db_url), clock=lambda: now[0])
    alice = store.sign_in("alice", 1)
    token = store.start_session(alice, timedelta(hours=8))
    assert store.session_account(token) == alice
    assert store.session_account(token + "x") is None
    assert store.session_account("") is None
    assert store.session_account("y" * 10_000) is None
    now[0] += timedelta(hours=8)
    assert store.session_account(token) is None
    fresh = store.start_session(alice, timedelta(hours=8))
    store.end_session(fresh)
    assert store.session_account(fresh) is None
    store.engine.dispose()


def test_a_login_state_is_good_once_and_only_until_it_expires(db_url: str) -> None:
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    store = AccountStore(open_database(db_url), clock=lambda: now[0])
    store.keep_login_state("state-1", timedelta(minutes=10))
    store.keep_login_state("state-2", timedelta(minutes=10))
    assert store.take_login_state("state-1")
    assert not store.take_login_state("state-1")  # replayed
    assert not store.take_login_state("never-kept")
    assert not store.take_login_state("")
    now[0] += timedelta(minutes=10)
    assert not store.take_login_state("state-2")  # expired
    store.engine.dispose()
