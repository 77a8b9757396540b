"""Compensation staff give a member from the console: a coupon of the configured kind, or
points added (or taken back) with a reason, within each role's daily limits.

Every compensation is a row here (who, whom, what, why) next to the coupon or ledger entry it
made, under one idempotency key: the same key again (a form submitted twice) returns the first
compensation and issues nothing. The staff member's row is locked first (PostgreSQL), so two
compensations of theirs at once are counted one after the other against the day's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, case, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.coupons import issue_coupon
from models.ledger import credit, debit
from models.orders import lot_expiry
from models.rules import ProgrammeRules
from models.staff import Staff

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
COUPON, POINTS = "coupon", "points"
# The code a compensation coupon records as its reason.
COUPON_REASON = "compensation"


class Compensation(Base):
    __tablename__ = "compensations"
    __table_args__ = (Index("ix_compensations_staff_id_at", "staff_id", "at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # coupon or points
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    reason: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class DailyLimit:
    """What one staff member may give in a day (None: no limit)."""

    coupons: int | None
    points: int | None


class CompensationRefused(Exception):
    """Nothing was given: ``reason`` is coupons or points (the day's limit is reached),
    conflict (the key was used for another compensation) or no_coupon (no kind configured)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Compensated:
    """The compensation; ``replayed`` when its key had given it before."""

    compensation: Compensation
    replayed: bool


async def given_since(session: AsyncSession, staff_id: int, since: datetime) -> tuple[int, int]:
    """Coupons and points (added or taken, in absolute value) the staff member gave since
    ``since``."""
    coupons, points = (
        await session.execute(
            select(
                func.count(case((Compensation.kind == COUPON, 1))),
                func.coalesce(func.sum(func.abs(Compensation.points)), 0),
            ).where(Compensation.staff_id == staff_id, Compensation.at >= since)
        )
    ).one()
    return int(coupons), int(points)


async def compensate(
    session: AsyncSession,
    rules: ProgrammeRules,
    *,
    staff_id: int,
    member_id: int,
    coupon_kind: str | None,
    points: int,
    reason: str,
    ledger_reason: str,
    key: str,
    limit: DailyLimit,
    day_start: datetime,
    now: datetime,
) -> Compensated:
    """Give ``member_id`` a coupon of ``coupon_kind`` (when given) or ``points`` (negative:
    taken back, InsufficientPoints when the balance is short) in the caller's transaction.

    ``reason`` is the staff member's, kept here; ``ledger_reason`` is what the member's ledger
    entry says. Refused with CompensationRefused when the staff member's compensations since
    ``day_start`` would pass ``limit``."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(select(Staff.id).where(Staff.id == staff_id).with_for_update())
    kind = COUPON if coupon_kind else POINTS
    existing = await session.scalar(select(Compensation).where(Compensation.idempotency_key == key))
    if existing is not None:
        if (existing.member_id, existing.kind, existing.points) != (
            member_id,
            kind,
            0 if coupon_kind else points,
        ):
            raise CompensationRefused("conflict")
        return Compensated(existing, replayed=True)
    coupons_given, points_given = await given_since(session, staff_id, day_start)
    if coupon_kind and limit.coupons is not None and coupons_given + 1 > limit.coupons:
        raise CompensationRefused("coupons")
    if not coupon_kind and limit.points is not None and points_given + abs(points) > limit.points:
        raise CompensationRefused("points")
    compensation = Compensation(
        staff_id=staff_id,
        member_id=member_id,
        kind=kind,
        points=0,
        reason=reason[:200],
        idempotency_key=key,
        at=now,
    )
    ledger_key = f"compensation:{key}"
    if coupon_kind:
        issued = await issue_coupon(
            session, rules, member_id, coupon_kind, reason=COUPON_REASON, key=ledger_key, now=now
        )
        compensation.coupon_id = issued.coupon.id
    elif points > 0:
        change = await credit(
            session,
            member_id,
            points,
            kind="adjust",
            reason=ledger_reason,
            key=ledger_key,
            at=now,
            expires_at=lot_expiry(rules, now),
        )
        compensation.points, compensation.entry_id = points, change.entry_id
    else:
        change = await debit(
            session, member_id, -points, kind="adjust", reason=ledger_reason, key=ledger_key, at=now
        )
        compensation.points, compensation.entry_id = points, change.entry_id
    session.add(compensation)
    await session.flush()
    return Compensated(compensation, replayed=False)
