"""The revocation watch: quiet while nothing is revoked, changed after a revocation made by
another connection, and on PostgreSQL changed by its poll even when no notification came."""

from __future__ import annotations

import time

from sqlalchemy import text

from formarket.accounts import AccountStore, open_database
from formarket.accounts.watch import watch


def test_a_revocation_elsewhere_changes_the_watch_once(store: AccountStore) -> None:
    alice = store.sign_in("alice", 1)
    _, view = store.create_key(alice)
    revocations = watch(store.engine)
    try:
        assert not revocations.changed()
        store.create_key(alice)  # a new key changes nothing any gateway believed
        assert not revocations.changed()
        store.revoke_key(alice, view.id)
        assert revocations.changed()
        assert not revocations.changed()
    finally:
        revocations.close()


def test_postgres_polls_the_generation_without_a_notification(pg_url: str) -> None:
    engine = open_database(pg_url)
    now = [0.0]
    revocations = watch(engine, poll_seconds=0.25, clock=lambda: now[0])
    try:
        with engine.begin() as conn:  # as a lost notification would leave it
            conn.execute(text("UPDATE generation SET value = value + 1"))
        time.sleep(0.2)
        assert not revocations.changed()
        now[0] += 0.3
        assert revocations.changed()
    finally:
        revocations.close()
        engine.dispose()


def test_a_broken_listening_connection_believes_nothing(pg_url: str) -> None:
    engine = open_database(pg_url)
    now = [0.0]
    revocations = watch(engine, poll_seconds=0.25, clock=lambda: now[0])
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        time.sleep(0.1)
        revocations.changed()  # may read only the server's goodbye
        now[0] += 0.3
        assert revocations.changed()
        # Then it listens again, on a new connection, and is quiet once it does.
        assert not all(revocations.changed() for _ in range(3))
    finally:
        revocations.close()
        engine.dispose()
