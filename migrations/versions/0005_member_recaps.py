"""The annual recap: one row per member and year, reached by an unguessable token.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_recaps",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("orders", sa.BigInteger(), nullable=False),
        sa.Column("spend_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_used", sa.BigInteger(), nullable=False),
        sa.Column("spend_rank", sa.BigInteger(), nullable=True),
        sa.Column("ranked_members", sa.BigInteger(), nullable=True),
        sa.Column("spend_top_percent", sa.Integer(), nullable=True),
        sa.Column("tier_start", sa.String(length=16), nullable=True),
        sa.Column("tier_end", sa.String(length=16), nullable=True),
        sa.Column("tier_journey", sa.JSON(), nullable=True),
        sa.Column("monthly_spend_fen", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_recaps_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_recaps")),
        sa.UniqueConstraint("token", name=op.f("uq_member_recaps_token")),
        sa.UniqueConstraint("year", "member_id", name="uq_member_recaps_year_member_id"),
    )


def downgrade() -> None:
    op.drop_table("member_recaps")
