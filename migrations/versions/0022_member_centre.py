"""Member codes a till has resolved or an order has claimed (models/member_codes.py): each
rotating member code is spent once.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_code_uses",
        sa.Column("code", sa.String(length=18), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_code_uses_member_id_members")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_member_code_uses")),
    )
    op.create_index(
        op.f("ix_member_code_uses_member_id"), "member_code_uses", ["member_id"], unique=False
    )
    op.create_index(
        op.f("ix_member_code_uses_resolved_at"), "member_code_uses", ["resolved_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_member_code_uses_resolved_at"), table_name="member_code_uses")
    op.drop_index(op.f("ix_member_code_uses_member_id"), table_name="member_code_uses")
    op.drop_table("member_code_uses")
