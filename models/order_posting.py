"""Posting an order: recording it with the points it earns and the tier it lifts, and refunding
it with the points that part earned taken back. Apart from models/orders.py (the tables and
the rules of an order) because posting needs tiers, and tiers read the orders table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefits.engine import active_benefits
from models.benefits.orders import after_paid_order, apply_boost
from models.benefits.upgrade import upgrade_gifts
from models.ledger import Reversal, credit, lock_members, reverse_order_points
from models.members import Member
from models.orders import (
    FullyRefunded,
    Order,
    OrderConflict,
    OrderIn,
    Refund,
    RefundTooLarge,
    find_order,
    lot_expiry,
    points_for,
)
from models.referrals import Referral
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

    A dated boost (国庆 double points, 会员日) in force on the order's local payment date adds
    its extra points to the order's own entry, named in its reason; the benefit rules an
    order triggers (复购赠礼, the points notice) are granted in the same transaction.

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
    benefits = await active_benefits(session, rules)
    boost = await apply_boost(
        session, rules, benefits, member.id, data.shop_order_id, data.paid_at, points, now
    )
    if boost is not None:
        points += boost.extra
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
            reason=f"订单 {data.shop_order_id}" + (f"（{boost.name}）" if boost else ""),
            key=f"order:{data.shop_order_id}",
            at=data.paid_at,
            expires_at=lot_expiry(rules, data.paid_at),
            order_id=order.id,
        )
        balance = change.balance_after
    await after_paid_order(session, rules, benefits, order, points, balance, boost, now)
    await session.refresh(member, ["points_balance"])
    upgrade = await upgrade_if_earned(
        session, rules, member, now, upgrade_gifts(session, rules, now)
    )
    return OrderOutcome(order, points, balance, member.tier, upgrade, replayed=False)


async def lock_order(session: AsyncSession, shop_order_id: str) -> Order | None:
    """The order, read under its row lock for a refund, or None if unknown.

    The lock order is members first (models/ledger.py): the members a refund may move points
    of (the order's member and, for a referral's first order, the referrer whose reward a
    full refund claws back) are locked before the order row, so a refund queues behind a
    redemption, a merge or the expiry batch instead of deadlocking with it, and two refunds
    of one order compute from what the other committed.
    """
    while True:
        found = (
            await session.execute(
                select(Order.id, Order.member_id, Referral.referrer_id)
                .outerjoin(Referral, Referral.first_order_id == Order.id)
                .where(Order.shop_order_id == shop_order_id)
            )
        ).first()
        if found is None:
            return None
        await lock_members(session, (m for m in (found.member_id, found.referrer_id) if m))
        order = await session.scalar(
            select(Order)
            .where(Order.id == found.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if order is not None and order.member_id == found.member_id:
            return order
        # A binding merge moved the order to another member meanwhile: lock that one.


async def refund_order(
    session: AsyncSession, order: Order, amount_fen: int | None, refund_id: str, now: datetime
) -> RefundOutcome:
    """Refund part (``amount_fen``) or the rest (None) of an order locked with ``lock_order``
    and take back the points that part earned.

    Points are reversed in proportion to the refunded share, computed on the running total
    so that refunding everything reverses exactly what was earned. The order's unspent points
    count first: those still in its lot are taken back, those that expired are not taken
    again (``points_expired``). Points the member already spent are taken from their other
    points; what the balance cannot cover is written off (``points_unrecovered``) rather than
    driving the balance negative.

    The same ``refund_id`` again returns the first refund and writes nothing (without an
    amount, or with the same one); with another order or amount it raises OrderConflict.
    Raises FullyRefunded when the rest is asked of an order with nothing left, RefundTooLarge
    when the amount exceeds what is left.
    """
    existing = await session.scalar(select(Refund).where(Refund.refund_id == refund_id))
    if existing is not None:
        if existing.order_id != order.id or amount_fen not in (None, existing.amount_fen):
            raise OrderConflict(f"refund {refund_id} was reported with other contents")
        return RefundOutcome(existing, order, replayed=True)
    refundable = order.amount_fen - order.refunded_fen
    if amount_fen is None:
        if refundable <= 0:
            raise FullyRefunded(f"order {order.shop_order_id} is already fully refunded")
        amount_fen = refundable
    if amount_fen > refundable:
        raise RefundTooLarge(refundable)
    refunded_total = order.refunded_fen + amount_fen
    due_total = order.points_earned * refunded_total // order.amount_fen
    to_reverse = due_total - order.points_reversed
    expired_before = await session.scalar(
        select(func.coalesce(func.sum(Refund.points_expired), 0)).where(Refund.order_id == order.id)
    )
    reversal: Reversal = await reverse_order_points(
        session,
        order.member_id,
        order.id,
        to_reverse,
        expired_before=int(expired_before or 0),
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
        points_expired=reversal.expired,
        created_at=now,
    )
    session.add(refund)
    await session.flush()
    return RefundOutcome(refund, order, replayed=False)
