"""Indexes for the programme jobs: a covering index for trailing-window order sums, and
indexes on point_lots.member_id and ledger_entries.order_id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:43:14.343768
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_order_id"), ["order_id"], unique=False)

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_member_id_paid_at"))
        batch_op.create_index(
            "ix_orders_member_window",
            ["member_id", "paid_at", "amount_fen", "refunded_fen"],
            unique=False,
        )

    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_point_lots_member_id"), ["member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_point_lots_member_id"))

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_member_window")
        batch_op.create_index(
            batch_op.f("ix_orders_member_id_paid_at"), ["member_id", "paid_at"], unique=False
        )

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_order_id"))
