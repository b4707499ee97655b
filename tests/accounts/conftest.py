"""Fixtures: the accounts database on SQLite and on PostgreSQL, and a store on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from formarket.accounts import AccountStore, open_database
from tests.accounts.databases import db_url, pg_url

__all__ = ["db_url", "pg_url"]


@pytest.fixture
def store(db_url: str) -> Iterator[AccountStore]:
    engine = open_database(db_url)
    try:
        yield AccountStore(engine)
    finally:
        engine.dispose()
