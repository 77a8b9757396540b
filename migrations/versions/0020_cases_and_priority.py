"""Service cases (工单) and their history: what an agent promised a member, kept past the
conversation's idle return (models/cases.py). The priority lane needs no table: the queue
orders by the member's tier, read from the members table.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "service_cases",
        sa.Column("id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("conversation_id", _ID, nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("owner_id", _ID, nullable=False),
        sa.Column("opened_by", _ID, nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("closed_by", _ID, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_service_cases_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_service_cases_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["staff.id"], name=op.f("fk_service_cases_owner_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["opened_by"], ["staff.id"], name=op.f("fk_service_cases_opened_by_staff")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by"], ["staff.id"], name=op.f("fk_service_cases_closed_by_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_cases")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_service_cases_conversation_id")),
    )
    with op.batch_alter_table("service_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_cases_member_id"), ["member_id"])
        batch_op.create_index(batch_op.f("ix_service_cases_owner_id"), ["owner_id"])
        batch_op.create_index("ix_service_cases_status_due_at", ["status", "due_at"])
    op.create_table(
        "service_case_entries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("staff_id", _ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["service_cases.id"],
            name=op.f("fk_service_case_entries_case_id_service_cases"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_service_case_entries_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_case_entries")),
    )
    with op.batch_alter_table("service_case_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_case_entries_case_id"), ["case_id"])


def downgrade() -> None:
    op.drop_table("service_case_entries")
    op.drop_table("service_cases")
