"""Coupon reminders: one row per coupon reminded of its coming expiry, so it is reminded once.

(The redemption conditions themselves are settings of the coupon kinds: no column.)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_reminders",
        sa.Column(
            "coupon_id",
            sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("reminded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_coupon_reminders_coupon_id_coupons")
        ),
        sa.PrimaryKeyConstraint("coupon_id", name=op.f("pk_coupon_reminders")),
    )


def downgrade() -> None:
    op.drop_table("coupon_reminders")
