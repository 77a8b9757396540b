"""Birthday gifts' fulfilment: one row per member and year for a physical gift, shipped with
the courier's tracking number.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "birthday_gifts",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tracking_number", sa.String(length=64), nullable=True),
        sa.Column("shipped_at", UTCDateTime(), nullable=True),
        sa.Column("updated_by", sa.String(length=32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_birthday_gifts_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_birthday_gifts")),
        sa.UniqueConstraint("member_id", "year", name="uq_birthday_gifts_member_year"),
    )


def downgrade() -> None:
    op.drop_table("birthday_gifts")
