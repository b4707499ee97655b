"""Subscriptions' included usage at the gateways: the tier's overage price kept with the
subscription, the current period's use, and the slices of it that gateway processes lease."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Written out rather than imported from the models, as in 0003.
MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("overage_per_request", MONEY, nullable=True))
        batch.add_column(
            sa.Column("used_requests", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("used_tokens", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "included_leases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("subscription_id", sa.String(32), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_requests", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name="fk_included_leases_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_included_leases"),
    )
    op.create_index("ix_included_leases_subscription_id", "included_leases", ["subscription_id"])


def downgrade() -> None:
    op.drop_index("ix_included_leases_subscription_id", "included_leases")
    op.drop_table("included_leases")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("used_tokens")
        batch.drop_column("used_requests")
        batch.drop_column("overage_per_request")
