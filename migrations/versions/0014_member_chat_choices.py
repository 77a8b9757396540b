"""Members' choices made in chat: when a birthday given in chat starts counting for the
birthday-month bonus, and the marketing opt-out (退订).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birthday_bonus_from", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("marketing_opted_out_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("marketing_opted_out_at")
        batch_op.drop_column("birthday_bonus_from")
