"""Invoices: each account's invoice of a closed period, kept private, as the bytes hashed."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("closing", MONEY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", "account", name="pk_invoices"),
    )
    op.create_index("ix_invoices_account", "invoices", ["account"])


def downgrade() -> None:
    op.drop_index("ix_invoices_account", "invoices")
    op.drop_table("invoices")
