"""Customer service's tools: the work list (follow-ups become low ratings and planned calls,
with an assignee, a due time, attempts and an outcome), compensations, and canned replies.

Follow-ups opened before this had no due time: they are due when they were opened (nobody
worked them, so they show as overdue).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("follow_ups") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(length=16), nullable=False, server_default="low_rating")
        )
        batch.add_column(sa.Column("period", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("assigned_to", _ID, nullable=True))
        batch.add_column(sa.Column("due_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("outcome_note", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("closed_by", _ID, nullable=True))
        batch.alter_column("rating_id", existing_type=_ID, nullable=True)
        batch.alter_column("kind", existing_type=sa.String(length=8), nullable=True)
        batch.alter_column("score", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("context", existing_type=sa.String(length=16), nullable=True)
        batch.create_foreign_key(
            op.f("fk_follow_ups_assigned_to_staff"), "staff", ["assigned_to"], ["id"]
        )
        batch.create_foreign_key(
            op.f("fk_follow_ups_closed_by_staff"), "staff", ["closed_by"], ["id"]
        )
        batch.create_unique_constraint(
            "uq_follow_ups_member_purpose", ["member_id", "purpose", "period"]
        )
        batch.create_index("ix_follow_ups_status_due_at", ["status", "due_at"])
    op.execute("UPDATE follow_ups SET due_at = created_at")
    with op.batch_alter_table("follow_ups") as batch:
        batch.alter_column("due_at", existing_type=UTCDateTime(), nullable=False)
        batch.alter_column("purpose", existing_type=sa.String(length=16), server_default=None)

    op.create_table(
        "follow_up_attempts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("follow_up_id", _ID, nullable=False),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["follow_up_id"],
            ["follow_ups.id"],
            name=op.f("fk_follow_up_attempts_follow_up_id_follow_ups"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_follow_up_attempts_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_up_attempts")),
    )
    op.create_index(
        op.f("ix_follow_up_attempts_follow_up_id"), "follow_up_attempts", ["follow_up_id"]
    )
    op.create_index(op.f("ix_follow_up_attempts_at"), "follow_up_attempts", ["at"])

    op.create_table(
        "compensations",
        sa.Column("id", _ID, nullable=False),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("coupon_id", _ID, nullable=True),
        sa.Column("entry_id", _ID, nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_compensations_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_compensations_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_compensations_coupon_id_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_compensations_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compensations")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_compensations_idempotency_key")),
    )
    op.create_index(op.f("ix_compensations_member_id"), "compensations", ["member_id"])
    op.create_index("ix_compensations_staff_id_at", "compensations", ["staff_id", "at"])

    # Filled with the defaults on first use (models/canned.py), not here.
    op.create_table(
        "canned_replies",
        sa.Column("id", _ID, nullable=False),
        sa.Column("grp", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("updated_by", _ID, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["staff.id"], name=op.f("fk_canned_replies_updated_by_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_replies")),
    )


def downgrade() -> None:
    op.execute("DELETE FROM programme_state WHERE key = 'canned_replies_seeded'")
    op.drop_table("canned_replies")
    op.drop_table("compensations")
    op.drop_table("follow_up_attempts")
    op.execute("DELETE FROM follow_ups WHERE purpose <> 'low_rating'")
    with op.batch_alter_table("follow_ups") as batch:
        batch.drop_index("ix_follow_ups_status_due_at")
        batch.drop_constraint("uq_follow_ups_member_purpose", type_="unique")
        batch.drop_constraint(op.f("fk_follow_ups_closed_by_staff"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_follow_ups_assigned_to_staff"), type_="foreignkey")
        for column in (
            "closed_by",
            "closed_at",
            "outcome_note",
            "outcome",
            "due_at",
            "assigned_to",
            "period",
            "purpose",
        ):
            batch.drop_column(column)
        batch.alter_column("rating_id", existing_type=_ID, nullable=False)
        batch.alter_column("kind", existing_type=sa.String(length=8), nullable=False)
        batch.alter_column("score", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("context", existing_type=sa.String(length=16), nullable=False)
