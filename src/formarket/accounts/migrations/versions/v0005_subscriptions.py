"""Subscriptions to a tier of a subscription-priced listing, each period charged once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("listing", sa.String(128), nullable=False),
        sa.Column("tier", sa.String(40), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("included_requests", sa.BigInteger(), nullable=True),
        sa.Column("included_tokens", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_subscriptions_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_account_id", "subscriptions", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_account_id", "subscriptions")
    op.drop_table("subscriptions")
