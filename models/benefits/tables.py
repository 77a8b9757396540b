"""The benefit rules' tables: what each rule granted to whom for which period, the monthly
budget counters, and the marketers' overrides of the configured settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")


class BenefitGrant(Base):
    """One rule's grant to one member for one period (a month, a year, an order, an entry
    into a segment…): unique, so a rerun or a second scheduler grants nothing twice. A
    ``holdout`` grant records a member held out of the rule's gift (they got nothing)."""

    __tablename__ = "benefit_grants"
    __table_args__ = (
        # Rule and period first: the set-based rules scan one period's grants by member range.
        UniqueConstraint("rule", "period", "member_id", name="uq_benefit_grants_rule_period"),
        Index("ix_benefit_grants_rule_created_at", "rule", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    period: Mapped[str] = mapped_column(String(40))
    # The tier or segment whose gift it was ("" for a rule with one gift).
    gift: Mapped[str] = mapped_column(String(24), default="")
    coupon_kind: Mapped[str | None] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    # False while the grant's points are still to be written to the ledger (set-based runs).
    credited: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BenefitBudget(Base):
    """What a budgeted rule has used of its budget in a month (coupons or points): one row,
    updated with a conditional statement, so concurrent grants never overspend it."""

    __tablename__ = "benefit_budgets"

    rule: Mapped[str] = mapped_column(String(40), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class BenefitOverride(Base):
    """A marketer's changes to a rule's configured settings (paused, amounts, budget)."""

    __tablename__ = "benefit_overrides"

    rule: Mapped[str] = mapped_column(String(40), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
