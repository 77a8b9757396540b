"""Events for shop systems: subscribers, each event's delivery to each subscriber, and which
member events have been fanned out (those before this revision count as fanned out: a new
subscriber gets what happens from now on, not the history).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 06:21:30.136226
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hook_subscribers",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_subscribers")),
        sa.UniqueConstraint("name", name=op.f("uq_hook_subscribers_name")),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "subscriber_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("retry_until", UTCDateTime(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["member_events.id"],
            name=op.f("fk_hook_deliveries_event_id_member_events"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_hook_deliveries_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["hook_subscribers.id"],
            name=op.f("fk_hook_deliveries_subscriber_id_hook_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_hook_deliveries_idempotency_key")),
    )
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hook_deliveries_member_id"), ["member_id"], unique=False
        )
        batch_op.create_index(
            "ix_hook_deliveries_subscriber", ["subscriber_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_hook_deliveries_waiting",
            ["not_before"],
            unique=False,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )

    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hooked_at", UTCDateTime(), nullable=True))
        batch_op.create_index(
            "ix_member_events_unhooked",
            ["id"],
            unique=False,
            postgresql_where=sa.text("hooked_at IS NULL"),
            sqlite_where=sa.text("hooked_at IS NULL"),
        )
    op.execute("UPDATE member_events SET hooked_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_member_events_unhooked",
            postgresql_where=sa.text("hooked_at IS NULL"),
            sqlite_where=sa.text("hooked_at IS NULL"),
        )
        batch_op.drop_column("hooked_at")

    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_hook_deliveries_waiting",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_index("ix_hook_deliveries_subscriber")
        batch_op.drop_index(batch_op.f("ix_hook_deliveries_member_id"))

    op.drop_table("hook_deliveries")
    op.drop_table("hook_subscribers")
