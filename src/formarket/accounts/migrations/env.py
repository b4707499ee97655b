"""Alembic's environment: always handed an open connection by formarket.accounts.database,
never a URL from a configuration file."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from formarket.accounts.models import Base

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it; batch mode does that for every later revision.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
