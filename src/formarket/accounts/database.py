"""Opening the accounts database: SQLite in the gateway's folder by default, PostgreSQL when
FORMARKET_DATABASE_URL names one. Opening upgrades it to the newest revision first.

Several gateways and the control plane open one database at once, so the upgrade is taken in
turns: under a file lock beside a SQLite file, under an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from formarket.errors import InputError, UsageError
from formarket.settings import DATABASE_URL

__all__ = ["database_url", "open_database"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: the advisory lock that PostgreSQL upgrades are taken under.
_UPGRADE_LOCK = 0x666D6B01
_BUSY_MS = 10_000


def database_url(gateway_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """FORMARKET_DATABASE_URL, else the SQLite file `accounts.sqlite` in the gateway's folder."""
    configured = DATABASE_URL.read(environ)
    if configured is not None:
        return configured
    return f"sqlite:///{gateway_dir / 'accounts.sqlite'}"


def _url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise UsageError(
            f"{DATABASE_URL.variable} is not a database URL",
            hint="sqlite:////var/lib/formarket/accounts.sqlite or postgresql://user@host/db",
        ) from exc
    if url.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver formarket ships with.
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "postgresql+psycopg"):
        raise UsageError(
            f"{DATABASE_URL.variable} names a {url.drivername} database",
            hint="the accounts live in SQLite (sqlite:///path) or PostgreSQL (postgresql://...)",
        )
    return url


def _on_sqlite_connect(dbapi: sqlite3.Connection, _record: Any) -> None:
    # WAL lets gateways read while the control plane writes; the busy timeout lets writers
    # from several processes wait for each other instead of failing.
    dbapi.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    dbapi.execute("PRAGMA journal_mode = WAL")
    dbapi.execute("PRAGMA foreign_keys = ON")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _upgrade(engine: Engine) -> None:
    config = _config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def open_database(raw_url: str) -> Engine:
    """An engine on the accounts database at `raw_url`, upgraded to the newest revision."""
    url = _url(raw_url)
    try:
        if url.drivername == "sqlite":
            if not url.database or url.database == ":memory:":
                raise UsageError(
                    "the accounts database must be a file that several processes share",
                    hint="sqlite:////var/lib/formarket/accounts.sqlite",
                )
            path = Path(url.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            event.listen(engine, "connect", _on_sqlite_connect)
            with _file_lock(path):
                _upgrade(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
            _upgrade(engine)
    except SQLAlchemyError as exc:
        raise InputError(
            f"cannot open the accounts database {url.render_as_string(hide_password=True)}:"
            f" {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
            hint=f"check {DATABASE_URL.variable} and that the database server is up",
        ) from exc
    return engine
