"""Indexes the nightly prune needs: hook_deliveries by event (each deleted event's foreign-key
check, and the "no delivery names it" test) and by creation time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 08:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_hook_deliveries_event_id", ["event_id"], unique=False)
        batch_op.create_index("ix_hook_deliveries_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_hook_deliveries_created_at")
        batch_op.drop_index("ix_hook_deliveries_event_id")
