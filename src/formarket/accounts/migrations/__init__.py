"""Alembic's migrations of the accounts database, kept in the package so that every
installation upgrades its database on open (formarket.accounts.database)."""
