"""Marketers' campaigns, their runs, and who each run targeted (variant or holdout); indexes
for the audience preview's mass allowance and the dashboard's recent pushes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 04:40:48.202034
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("holdout_percent", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.String(length=8), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=True),
        sa.Column("cron", sa.String(length=64), nullable=True),
        sa.Column("next_run_at", UTCDateTime(), nullable=True),
        sa.Column("conversion_days", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("approved_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaigns_status_next_run_at", ["status", "next_run_at"], unique=False
        )

    op.create_table(
        "campaign_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("targeted", sa.BigInteger(), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_runs_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_runs")),
    )
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_runs_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "campaign_members",
        sa.Column("run_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"), nullable=False
        ),
        sa.Column("variant", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_campaign_members_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["campaign_runs.id"], name=op.f("fk_campaign_members_run_id_campaign_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "member_id", name=op.f("pk_campaign_members")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_deliveries_mass_sent",
            ["updated_at", "member_id"],
            unique=False,
            postgresql_where=sa.text("channel = 'mass' AND status = 'sent'"),
            sqlite_where=sa.text("channel = 'mass' AND status = 'sent'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deliveries_mass_sent",
            postgresql_where=sa.text("channel = 'mass' AND status = 'sent'"),
            sqlite_where=sa.text("channel = 'mass' AND status = 'sent'"),
        )
        batch_op.drop_index("ix_deliveries_created_at")

    op.drop_table("campaign_members")
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_runs_campaign_id"))

    op.drop_table("campaign_runs")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_status_next_run_at")

    op.drop_table("campaigns")
