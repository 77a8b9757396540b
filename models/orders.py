"""Orders reported by shop systems, the points they earn, and refunds that take them back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal

from dateutil.relativedelta import relativedelta
from sqlalchemy import BigInteger, ForeignKey, Index, String, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.members import Member
from models.rules import ProgrammeRules

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")


class Order(Base):
    __tablename__ = "orders"
    # Covers the trailing-window sums (tiers, segments) without visiting the table rows.
    __table_args__ = (
        Index("ix_orders_member_window", "member_id", "paid_at", "amount_fen", "refunded_fen"),
        # Who bought a category lately (campaign audiences, models/audience.py).
        Index("ix_orders_category_paid_at", "category", "paid_at", "member_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    shop_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    channel: Mapped[str] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(64))
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    points_reversed: Mapped[int] = mapped_column(BigInteger)
    points_unrecovered: Mapped[int] = mapped_column(BigInteger)
    # The order's points that had expired before this refund: not taken again.
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderConflict(Exception):
    """The order or refund id was used before with different contents; nothing was written."""


class FullyRefunded(Exception):
    """A refund of "the rest" of an order that has nothing left to refund."""


class RefundTooLarge(Exception):
    """The refund would take back more than the order's remaining amount."""

    def __init__(self, refundable_fen: int) -> None:
        super().__init__(f"only {refundable_fen} fen can still be refunded")
        self.refundable_fen = refundable_fen


@dataclass(frozen=True, slots=True)
class OrderIn:
    shop_order_id: str
    member_id: int
    amount_fen: int
    paid_at: datetime
    channel: str
    category: str | None = None

    def fingerprint(self) -> str:
        """What identifies the order's contents: the same order sent again has the same one.
        The time is the instant in UTC, whatever offset the sender wrote it with."""
        canonical = json.dumps(
            [
                self.shop_order_id,
                self.member_id,
                self.amount_fen,
                self.paid_at.astimezone(UTC).isoformat(),
                self.channel,
                self.category,
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


# Orders dated further ahead than this are refused (a shop clock that is far off).
FUTURE_TOLERANCE = timedelta(minutes=5)


def order_problem(
    rules: ProgrammeRules, amount_fen: int, paid_at: datetime, now: datetime
) -> tuple[str, str] | None:
    """What is wrong with an order beyond its shape, as (field, message), or None.

    The API and the CSV import both ask this, so they refuse the same orders in the same words.
    """
    if amount_fen > rules.points.max_order_fen:
        return "amount_fen", f"exceeds {rules.points.max_order_fen}"
    if paid_at > now + FUTURE_TOLERANCE:
        return "paid_at", "is in the future"
    return None


def points_for(rules: ProgrammeRules, member: Member, amount_fen: int, paid_at: datetime) -> int:
    """¥1 = 1 point × the member's tier multiplier, doubled (setting) in the birthday month."""
    multiplier = rules.tier(member.tier).multiplier
    local = paid_at.astimezone(rules.zone).date()
    if (
        member.birthday
        and local.month == member.birthday.month
        # A birthday given in chat counts from the next month: none moves it to earn now.
        and (member.birthday_bonus_from is None or local >= member.birthday_bonus_from)
    ):
        multiplier *= rules.points.birthday_multiplier
    points = (Decimal(amount_fen) * multiplier / 100).to_integral_value(ROUND_FLOOR)
    return int(points)


def lot_expiry(rules: ProgrammeRules, earned_at: datetime) -> datetime:
    """When points earned at ``earned_at`` expire: the end of the same day ``expiry_months``
    later (rolling), or the end of next calendar year, in the programme's time zone."""
    local = earned_at.astimezone(rules.zone).date()
    if rules.points.expiry_policy == "end_of_next_year":
        last_day = local.replace(year=local.year + 1, month=12, day=31)
    else:
        last_day = local + relativedelta(months=rules.points.expiry_months)
    return datetime.combine(last_day + timedelta(days=1), time(), rules.zone)


async def find_order(session: AsyncSession, shop_order_id: str) -> Order | None:
    """The order with the shop's id, if recorded."""
    return await session.scalar(select(Order).where(Order.shop_order_id == shop_order_id))


async def latest_orders(
    db: AsyncSession | AsyncConnection, member_id: int, limit: int = 3
) -> list[tuple[datetime, str, int, int]]:
    """The member's latest orders as (paid at, shop order id, amount in fen, points earned)."""
    orders = Order.__table__
    rows = await db.execute(
        select(
            orders.c.paid_at, orders.c.shop_order_id, orders.c.amount_fen, orders.c.points_earned
        )
        .where(orders.c.member_id == member_id)
        .order_by(orders.c.paid_at.desc(), orders.c.id.desc())
        .limit(limit)
    )
    return [(at, ref, int(amount), int(points)) for at, ref, amount, points in rows]
