"""Knowing, for every call and in a few microseconds, whether a key stopped being valid.

The gateway asks once per turn of its event loop, for the calls that arrived together
(`Gateway._current_keys`): none of them could tell a revocation committed between them from
one committed just after.

A gateway keeps the keys it has checked, so that a call does not cost a database query; a
revocation must still reach every gateway at once, whichever process made it. The store bumps
the generation row in the revoking transaction, and each gateway watches it:

- SQLite: `PRAGMA data_version` on the gateway's own connection changes when any other
  connection commits (no file is read when nothing changed); only then is the row read.
- PostgreSQL: a query per call would cost a round trip (about 0.1 ms here), so the revoking
  transaction also sends a NOTIFY that each gateway's listening connection receives; reading
  what arrived is one non-blocking socket read. A notification is passed on after the commit,
  not with it, and on a busy machine it can arrive after the revoker's next call; so the row
  is also read on the first call after every POLL_SECONDS, and the revoker waits that long
  before answering (AccountStore.revoke_key): once it has answered, every gateway either
  heard the notification or reads the row on its next call.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy.engine import Engine

__all__ = ["NOTIFY_CHANNEL", "POLL_SECONDS", "RevocationWatch", "watch"]

NOTIFY_CHANNEL = "formarket_keys"
# A query every quarter second costs a gateway 0.04% of its time; a revocation waits this long.
POLL_SECONDS = 0.25
_GENERATION = "SELECT value FROM generation WHERE id = 1"


class RevocationWatch:
    """`changed()` is true when a key may have stopped being valid since it was last asked."""

    def changed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _SqliteWatch(RevocationWatch):
    def __init__(self, path: Path) -> None:
        # Read-only, and shared with the gateway's event loop thread (one caller at a time).
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        self._version = self._data_version()
        self._generation = self._read_generation()

    def _data_version(self) -> int:
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _read_generation(self) -> int:
        row = self._conn.execute(_GENERATION).fetchone()
        return int(row[0]) if row else 0

    def changed(self) -> bool:
        version = self._data_version()
        if version == self._version:
            return False
        self._version = version
        generation = self._read_generation()
        if generation == self._generation:
            return False
        self._generation = generation
        return True

    def close(self) -> None:
        self._conn.close()


class _PostgresWatch(RevocationWatch):
    def __init__(self, conninfo: str, *, poll_seconds: float, clock: Callable[[], float]) -> None:
        self._conninfo = conninfo
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._conn: psycopg.Connection[tuple[int]] | None = None
        self._generation = -1
        self._polled = clock()
        self._connect()

    def _connect(self) -> None:
        self._conn = psycopg.connect(self._conninfo, autocommit=True)
        self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._generation = self._read_generation()

    def _read_generation(self) -> int:
        assert self._conn is not None
        row = self._conn.execute(_GENERATION).fetchone()
        return int(row[0]) if row else 0

    def changed(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
                return True
            pgconn = self._conn.pgconn
            pgconn.consume_input()
            heard = False
            while pgconn.notifies() is not None:
                heard = True
            now = self._clock()
            if not heard and now - self._polled < self._poll_seconds:
                return False
            self._polled = now
            generation = self._read_generation()
            if heard or generation != self._generation:
                self._generation = generation
                return True
            return False
        except psycopg.Error:
            # Believe nothing kept while the database cannot be watched; try again next call.
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def watch(
    engine: Engine,
    *,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> RevocationWatch:
    """A watch on the accounts database behind `engine` (from `open_database`)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return _SqliteWatch(Path(url.database))
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return _PostgresWatch(conninfo, poll_seconds=poll_seconds, clock=clock)
