"""Posting an order: recording it with the points it earns and the tier it lifts, and refunding
it with the points that part earned taken back. Apart from models/orders.py (the tables and
the rules of an order) because posting needs tiers, and tiers read the orders table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.ledger import Reversal, credit, reverse_order_points
from models.members import Member
from models.orders import (
    Order,
    OrderConflict,
    OrderIn,
    Refund,
    RefundTooLarge,
    find_order,
    lot_expiry,
    points_for,
)
from models.rules import ProgrammeRules
from models.tiers import TierChange, upgrade_if_earned


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
