"""Benefit rules (礼遇规则): grants per rule, member and period; monthly budget counters;
marketers' overrides of the configured settings; and when a member entered their segment
(the segment rule gives once per entry).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "benefit_grants",
        sa.Column("id", _ID, nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("gift", sa.String(length=24), nullable=False),
        sa.Column("coupon_kind", sa.String(length=32), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("credited", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_benefit_grants_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefit_grants")),
        sa.UniqueConstraint("rule", "period", "member_id", name="uq_benefit_grants_rule_period"),
    )
    op.create_index("ix_benefit_grants_rule_created_at", "benefit_grants", ["rule", "created_at"])
    op.create_index(op.f("ix_benefit_grants_member_id"), "benefit_grants", ["member_id"])
    op.create_table(
        "benefit_budgets",
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "month", name=op.f("pk_benefit_budgets")),
    )
    op.create_table(
        "benefit_overrides",
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_by", _ID, nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["staff.id"], name=op.f("fk_benefit_overrides_updated_by_staff")
        ),
        sa.PrimaryKeyConstraint("rule", name=op.f("pk_benefit_overrides")),
    )
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("segment_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("segment_since")
    op.drop_table("benefit_overrides")
    op.drop_table("benefit_budgets")
    op.drop_index(op.f("ix_benefit_grants_member_id"), table_name="benefit_grants")
    op.drop_index("ix_benefit_grants_rule_created_at", table_name="benefit_grants")
    op.drop_table("benefit_grants")
