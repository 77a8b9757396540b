"""Loyalty core: orders, the points ledger and lots, tiers, coupons, binding codes, events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:03:20.280424
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programme_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_programme_state")),
    )
    op.create_table(
        "binding_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("used_by_openid", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_binding_codes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_binding_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_binding_codes_code")),
    )
    with op.batch_alter_table("binding_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_binding_codes_member_id"), ["member_id"], unique=False)

    op.create_table(
        "coupons",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=False),
        sa.Column("redeemed_at", UTCDateTime(), nullable=True),
        sa.Column("shop_order_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_coupons_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_coupons_idempotency_key")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index("ix_coupons_member_id_status", ["member_id", "status"], unique=False)
        batch_op.create_index(
            "ix_coupons_valid_until_issued",
            ["valid_until"],
            unique=False,
            postgresql_where=sa.text("status = 'issued'"),
            sqlite_where=sa.text("status = 'issued'"),
        )

    op.create_table(
        "member_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_events_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_events")),
    )
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_events_member_id"), ["member_id"], unique=False)
        batch_op.create_index(
            "ix_member_events_unprocessed",
            ["id"],
            unique=False,
            postgresql_where=sa.text("processed_at IS NULL"),
            sqlite_where=sa.text("processed_at IS NULL"),
        )

    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("shop_order_id", sa.String(length=64), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_orders_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("shop_order_id", name=op.f("uq_orders_shop_order_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_member_id_paid_at", ["member_id", "paid_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_paid_at"), ["paid_at"], unique=False)

    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("from_tier", sa.String(length=16), nullable=False),
        sa.Column("to_tier", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_tier_changes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_changes")),
    )
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tier_changes_member_id"), ["member_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_entries_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_ledger_entries_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entries_idempotency_key")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_member_id_id", ["member_id", "id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_unrecovered", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_refunds_refund_id")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_order_id"), ["order_id"], unique=False)

    op.create_table(
        "point_lots",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("earned_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("expired_points", sa.BigInteger(), nullable=False),
        sa.Column("expired_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_point_lots_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_point_lots_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_point_lots_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_lots_expiring",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )
        batch_op.create_index(
            "ix_point_lots_member_open",
            ["member_id", "earned_at"],
            unique=False,
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("birthday", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("points_balance", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("tier", sa.String(length=16), nullable=False, server_default="basic")
        )
        batch_op.add_column(sa.Column("tier_since", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("segment", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("segment_at", UTCDateTime(), nullable=True))
        batch_op.alter_column("openid", existing_type=sa.VARCHAR(length=64), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_members_customer_ref"), ["customer_ref"])


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_members_customer_ref"), type_="unique")
        batch_op.alter_column("openid", existing_type=sa.VARCHAR(length=64), nullable=False)
        batch_op.drop_column("segment_at")
        batch_op.drop_column("segment")
        batch_op.drop_column("tier_since")
        batch_op.drop_column("tier")
        batch_op.drop_column("points_balance")
        batch_op.drop_column("tags")
        batch_op.drop_column("birthday")
        batch_op.drop_column("phone")
        batch_op.drop_column("name")
        batch_op.drop_column("customer_ref")

    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_point_lots_member_open",
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )
        batch_op.drop_index(
            "ix_point_lots_expiring",
            postgresql_where=sa.text("remaining > 0"),
            sqlite_where=sa.text("remaining > 0"),
        )

    op.drop_table("point_lots")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_order_id"))

    op.drop_table("refunds")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_member_id_id")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_changes_member_id"))

    op.drop_table("tier_changes")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_paid_at"))
        batch_op.drop_index("ix_orders_member_id_paid_at")

    op.drop_table("orders")
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_member_events_unprocessed",
            postgresql_where=sa.text("processed_at IS NULL"),
            sqlite_where=sa.text("processed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_member_events_member_id"))

    op.drop_table("member_events")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_coupons_valid_until_issued",
            postgresql_where=sa.text("status = 'issued'"),
            sqlite_where=sa.text("status = 'issued'"),
        )
        batch_op.drop_index("ix_coupons_member_id_status")

    op.drop_table("coupons")
    with op.batch_alter_table("binding_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_binding_codes_member_id"))

    op.drop_table("binding_codes")
    op.drop_table("programme_state")
