"""Catalogue items remember the Idempotency-Key of the API request that added them, and a hash
of what it asked for, so a shop system's retried POST /api/v1/rewards gets the item it made
instead of a second one.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reward_items") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("ix_reward_items_idempotency_key"), "reward_items", ["idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_reward_items_idempotency_key"), table_name="reward_items")
    with op.batch_alter_table("reward_items") as batch:
        batch.drop_column("request_fingerprint")
        batch.drop_column("idempotency_key")
