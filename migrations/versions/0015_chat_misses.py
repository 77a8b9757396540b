"""What the bot did not understand: phrasings with counts and what staff taught, and the
members' own words kept for a limited time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chat_misses",
        sa.Column("id", _ID, nullable=False),
        sa.Column("phrasing", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("taught_intent", sa.String(length=32), nullable=True),
        sa.Column("taught_faq", sa.String(length=64), nullable=True),
        sa.Column("taught_at", UTCDateTime(), nullable=True),
        sa.Column("taught_by", _ID, nullable=True),
        sa.ForeignKeyConstraint(["taught_by"], ["staff.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phrasing"),
    )
    op.create_index("ix_chat_misses_last_seen_at", "chat_misses", ["last_seen_at"])
    op.create_table(
        "chat_miss_texts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("miss_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["miss_id"], ["chat_misses.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_chat_miss_texts_miss_id", "chat_miss_texts", ["miss_id"])
    op.create_index("ix_chat_miss_texts_member_id", "chat_miss_texts", ["member_id"])
    op.create_index("ix_chat_miss_texts_created_at", "chat_miss_texts", ["created_at"])


def downgrade() -> None:
    op.drop_table("chat_miss_texts")
    op.drop_table("chat_misses")
