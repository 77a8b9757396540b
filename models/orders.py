"""Orders reported by shop systems, the points they earn, and refunds that take them back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal

from dateutil.relativedelta import relativedelta
from sqlalchemy import BigInteger, ForeignKey, Index, String, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.ledger import Reversal, credit, reverse_order_points
from models.members import Member
from models.rules import ProgrammeRules
from models.tiers import TierChange, upgrade_if_earned

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")


class Order(Base):
    __tablename__ = "orders"
    # Covers the trailing-window sums (tiers, segments) without visiting the table rows.
    __table_args__ = (
        Index("ix_orders_member_window", "member_id", "paid_at", "amount_fen", "refunded_fen"),
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderConflict(Exception):
    """The order or refund id was used before with different contents; nothing was written."""


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
        canonical = json.dumps(
            [
                self.shop_order_id,
                self.member_id,
                self.amount_fen,
                self.paid_at.isoformat(),
                self.channel,
                self.category,
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    order: Order
    points: int
    balance: int
    tier: str
    upgrade: TierChange | None
    replayed: bool


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund: Refund
    order: Order
    replayed: bool


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
    if member.birthday and paid_at.astimezone(rules.zone).month == member.birthday.month:
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


async def record_order(
    session: AsyncSession, rules: ProgrammeRules, member: Member, data: OrderIn, now: datetime
) -> OrderOutcome:
    """Record a paid order, credit its points and apply any tier upgrade it earns.

    The same order again returns the first result and writes nothing; the same id with
    different contents raises OrderConflict.
    """
    existing = await find_order(session, data.shop_order_id)
    if existing is not None:
        if existing.fingerprint != data.fingerprint():
            raise OrderConflict(f"order {data.shop_order_id} was reported with other contents")
        return OrderOutcome(
            existing,
            existing.points_earned,
            member.points_balance,
            member.tier,
            None,
            replayed=True,
        )
    points = points_for(rules, member, data.amount_fen, data.paid_at)
    order = Order(
        shop_order_id=data.shop_order_id,
        member_id=member.id,
        amount_fen=data.amount_fen,
        paid_at=data.paid_at,
        channel=data.channel,
        category=data.category,
        points_earned=points,
        fingerprint=data.fingerprint(),
        created_at=now,
    )
    session.add(order)
    await session.flush()
    balance = member.points_balance
    if points > 0:
        change = await credit(
            session,
            member.id,
            points,
            kind="earn",
            reason=f"订单 {data.shop_order_id}",
            key=f"order:{data.shop_order_id}",
            at=data.paid_at,
            expires_at=lot_expiry(rules, data.paid_at),
            order_id=order.id,
        )
        balance = change.balance_after
    await session.refresh(member, ["points_balance"])
    upgrade = await upgrade_if_earned(session, rules, member, now)
    return OrderOutcome(order, points, balance, member.tier, upgrade, replayed=False)


async def refund_order(
    session: AsyncSession, order: Order, amount_fen: int, refund_id: str, now: datetime
) -> RefundOutcome:
    """Refund part or all of an order and take back the points that part earned.

    Points are reversed in proportion to the refunded share, computed on the running total
    so that refunding everything reverses exactly what was earned. Points the member already
    spent are taken from their other points; what the balance cannot cover is written off
    (``points_unrecovered``) rather than driving the balance negative.
    """
    existing = await session.scalar(select(Refund).where(Refund.refund_id == refund_id))
    if existing is not None:
        if existing.order_id != order.id or existing.amount_fen != amount_fen:
            raise OrderConflict(f"refund {refund_id} was reported with other contents")
        return RefundOutcome(existing, order, replayed=True)
    refundable = order.amount_fen - order.refunded_fen
    if amount_fen > refundable:
        raise RefundTooLarge(refundable)
    refunded_total = order.refunded_fen + amount_fen
    due_total = order.points_earned * refunded_total // order.amount_fen
    to_reverse = due_total - order.points_reversed
    reversal: Reversal = await reverse_order_points(
        session,
        order.member_id,
        order.id,
        to_reverse,
        reason=f"订单 {order.shop_order_id} 退款",
        key=f"refund:{refund_id}",
        at=now,
    )
    taken = -reversal.change.points if reversal.change else 0
    order.refunded_fen = refunded_total
    order.points_reversed = due_total
    refund = Refund(
        refund_id=refund_id,
        order_id=order.id,
        amount_fen=amount_fen,
        points_reversed=taken,
        points_unrecovered=reversal.unrecovered,
        created_at=now,
    )
    session.add(refund)
    await session.flush()
    return RefundOutcome(refund, order, replayed=False)
