"""Campaign rewards and purchase-based audiences: a campaign's reward (a coupon kind or points,
issued when its push is sent), the record of each member's reward (one per campaign and
member), and an index on orders by category and time for "bought 彩妆 in the last 6 months".

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reward", sa.JSON(), nullable=True))
    op.create_table(
        "campaign_rewards",
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("delivery_id", _ID, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("coupon_code", sa.String(length=32), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_rewards_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_campaign_rewards_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_campaign_rewards_delivery_id_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["campaign_runs.id"], name=op.f("fk_campaign_rewards_run_id_campaign_runs")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", name=op.f("pk_campaign_rewards")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_category_paid_at", ["category", "paid_at", "member_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_category_paid_at")
    op.drop_table("campaign_rewards")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("reward")
