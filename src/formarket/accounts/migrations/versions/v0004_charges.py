"""Charges drawn on a balance by the platform rather than by calls (instance time), each
recorded once under the id of what it is for; and when a balance was first seen at zero."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Written out rather than imported from the models, as in 0003.
MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "charges",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_charges_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_charges"),
    )
    op.create_index("ix_charges_account_id", "charges", ["account_id"])
    with op.batch_alter_table("balances") as batch:
        batch.add_column(sa.Column("zero_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("balances") as batch:
        batch.drop_column("zero_since")
    op.drop_index("ix_charges_account_id", "charges")
    op.drop_table("charges")
