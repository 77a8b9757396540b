"""The points catalogue (积分兑换): items, and redemptions with their fulfilment records.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reward_items",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("coupon_kind", sa.String(length=32), nullable=True),
        sa.Column("delivery", sa.String(length=8), nullable=True),
        sa.Column("points_price", sa.BigInteger(), nullable=False),
        sa.Column("cash_fen", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("valid_from", UTCDateTime(), nullable=True),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("limit_count", sa.Integer(), nullable=True),
        sa.Column("limit_period", sa.String(length=8), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("early_tiers", sa.JSON(), nullable=False),
        sa.Column("opens_at", UTCDateTime(), nullable=True),
        sa.Column("image_url", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_items")),
    )
    op.create_table(
        "reward_redemptions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("cash_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("coupon_id", _ID, nullable=True),
        sa.Column("pickup_code", sa.String(length=16), nullable=True),
        sa.Column("tracking_number", sa.String(length=64), nullable=True),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("drawn", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["reward_items.id"],
            name=op.f("fk_reward_redemptions_item_id_reward_items"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_reward_redemptions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_reward_redemptions_coupon_id_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_reward_redemptions_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_redemptions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_reward_redemptions_idempotency_key")),
        sa.UniqueConstraint("pickup_code", name=op.f("uq_reward_redemptions_pickup_code")),
    )
    op.create_index(
        "ix_reward_redemptions_member_item", "reward_redemptions", ["member_id", "item_id"]
    )
    op.create_index(
        "ix_reward_redemptions_item_status", "reward_redemptions", ["item_id", "status"]
    )
    op.create_index("ix_reward_redemptions_status_id", "reward_redemptions", ["status", "id"])


def downgrade() -> None:
    op.drop_table("reward_redemptions")
    op.drop_table("reward_items")
