"""Leases on work handed to the queue, kept beside the queue itself.

The reconciler takes a lease before it enqueues a build, a deploy or a stop, and the task gives
it back when it finishes; while the lease lasts, the next cycle does not enqueue the same work
again. A lease expires on its own, so work lost with a dead worker is handed out again.

The leases live where the queue lives: in Redis next to a Redis broker (so that when Redis
loses its contents, the queued messages and their leases go together and the reconciler
hands everything out again at once), and in a SQLite file next to the embedded broker.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["Leases", "RedisLeases", "SqliteLeases", "open_leases"]

_PREFIX = "formarket:lease:"


class Leases(Protocol):
    def held(self) -> dict[str, str]:
        """Every lease that has not expired: its key and the host it names ("" for none)."""
        ...

    def take(self, key: str, host: str, seconds: float) -> bool:
        """Take a lease; False when someone holds it already."""
        ...

    def take_all(self, wanted: Sequence[tuple[str, str, float]]) -> set[str]:
        """Take many leases (key, host, seconds) at once; the keys that were free."""
        ...

    def release(self, key: str) -> None: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLeases:
    def __init__(self, url: str) -> None:
        import redis  # start-up: the embedded farm (sqlite) never loads the Redis client

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def held(self) -> dict[str, str]:
        keys = list(self._redis.scan_iter(match=f"{_PREFIX}*", count=1000))
        if not keys:
            return {}
        values = self._redis.mget(keys)
        return {
            _text(k)[len(_PREFIX) :]: _text(v)
            for k, v in zip(keys, values, strict=True)
            if v is not None
        }

    def take(self, key: str, host: str, seconds: float) -> bool:
        ms = max(1, int(seconds * 1000))
        return bool(self._redis.set(f"{_PREFIX}{key}", host, nx=True, px=ms))

    def take_all(self, wanted: Sequence[tuple[str, str, float]]) -> set[str]:
        pipe = self._redis.pipeline(transaction=False)
        for key, host, seconds in wanted:
            pipe.set(f"{_PREFIX}{key}", host, nx=True, px=max(1, int(seconds * 1000)))
        results = pipe.execute()
        return {key for (key, _h, _s), ok in zip(wanted, results, strict=True) if ok}

    def release(self, key: str) -> None:
        self._redis.delete(f"{_PREFIX}{key}")


class SqliteLeases:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS lease"
                " (key TEXT PRIMARY KEY, host TEXT NOT NULL, until REAL NOT NULL)"
            )

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def held(self) -> dict[str, str]:
        with self._db() as db:
            rows = db.execute("SELECT key, host FROM lease WHERE until > ?", (time.time(),))
            return dict(rows.fetchall())

    def take(self, key: str, host: str, seconds: float) -> bool:
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM lease WHERE key = ? AND until <= ?", (key, now))
            cursor = db.execute(
                "INSERT OR IGNORE INTO lease (key, host, until) VALUES (?, ?, ?)",
                (key, host, now + seconds),
            )
            return cursor.rowcount == 1

    def take_all(self, wanted: Sequence[tuple[str, str, float]]) -> set[str]:
        # One transaction for a whole cycle's work: one fsync, not one per action.
        now = time.time()
        taken: set[str] = set()
        with self._db() as db:
            for key, host, seconds in wanted:
                db.execute("DELETE FROM lease WHERE key = ? AND until <= ?", (key, now))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO lease (key, host, until) VALUES (?, ?, ?)",
                    (key, host, now + seconds),
                )
                if cursor.rowcount == 1:
                    taken.add(key)
        return taken

    def release(self, key: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM lease WHERE key = ?", (key,))


def open_leases(broker_url: str, state: Path) -> Leases:
    """The leases that belong with this broker."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLeases(broker_url)
    return SqliteLeases(state / "leases.sqlite")
