"""Stored programme figures: a month's figures by figure and group once computed (a month that
has ended is kept; one still running is reused for a few minutes), so a report computes only
the months not stored and the dashboard's trend is a read (models/figures.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programme_figure_months",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("breakdowns", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_programme_figure_months")),
    )
    op.create_table(
        "programme_figures",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("figure", sa.String(length=32), nullable=False),
        sa.Column("grp", sa.String(length=220), nullable=False),
        sa.Column("numerator", sa.Float(), nullable=False),
        sa.Column("denominator", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("month", "figure", "grp", name=op.f("pk_programme_figures")),
    )


def downgrade() -> None:
    op.drop_table("programme_figures")
    op.drop_table("programme_figure_months")
