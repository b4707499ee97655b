"""Prepaid credit: balances, the slices of them gateways lease, and top-ups."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Written out rather than imported from the models, so this revision stays as it was made:
# NUMERIC on PostgreSQL, decimal text on SQLite (whose NUMERIC affinity would make floats).
MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("available", MONEY, nullable=False),
        sa.Column("spent", MONEY, nullable=False),
        sa.Column("credited", MONEY, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_balances_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_balances"),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("spent", MONEY, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_leases_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_leases"),
    )
    op.create_index("ix_leases_account_id", "leases", ["account_id"])
    op.create_table(
        "topups",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_topups_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_topups"),
    )
    op.create_index("ix_topups_account_id", "topups", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_topups_account_id", "topups")
    op.drop_table("topups")
    op.drop_index("ix_leases_account_id", "leases")
    op.drop_table("leases")
    op.drop_table("balances")
