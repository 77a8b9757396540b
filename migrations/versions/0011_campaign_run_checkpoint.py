"""Campaign runs keep a planning checkpoint: the last member (in id order) whose push is
planned, so a planner that stops is resumed after it. Runs from before this revision are
counted as planned: one cut short back then is long past, and is not resumed now.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("planned_through", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.alter_column("planned_through", server_default=None)
    runs = sa.table("campaign_runs", sa.column("planned", sa.Boolean()))
    op.execute(runs.update().where(runs.c.planned.is_(False)).values(planned=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_column("planned_through")
