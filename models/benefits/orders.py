"""What a paid order brings besides its points: a dated boost's extra points (applied to the
order's own ledger entry), the 复购赠礼 on the member's Nth order, and the service notice of
the points credited (the order, the points, the new balance)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefit_settings import BenefitsConfig, Gift
from models.benefits.engine import boost_for, claim, grant
from models.events import record_event
from models.orders import Order
from models.rules import ProgrammeRules

# The member event of a credited order (its push: bot/push/notifications.py).
ORDER_CREDITED = "order_credited"


@dataclass(frozen=True, slots=True)
class AppliedBoost:
    """A dated boost applied to an order: its rule, name, multiplier and the extra points."""

    rule: str
    name: str
    multiplier: Decimal
    extra: int


async def apply_boost(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    member_id: int,
    shop_order_id: str,
    paid_at: datetime,
    points: int,
    now: datetime,
) -> AppliedBoost | None:
    """The boost covering the order's local payment date, its extra points claimed against
    the boost's budget (once per order); None when no active boost applies or it is spent."""
    found = boost_for(config, paid_at.astimezone(rules.zone).date())
    if found is None or points <= 0:
        return None
    code, boost = found
    extra = int((Decimal(points) * (boost.multiplier - 1)).to_integral_value(ROUND_FLOOR))
    if extra <= 0:
        return None
    period = f"order:{shop_order_id}"
    if not await claim(session, rules, code, boost, member_id, period, Gift(points=extra), now):
        return None
    return AppliedBoost(code, boost.name, boost.multiplier, extra)


async def after_paid_order(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    order: Order,
    points: int,
    balance: int,
    boost: AppliedBoost | None,
    now: datetime,
) -> None:
    """The 复购赠礼 on the Nth order and the points notice, in the order's transaction (the
    member is locked: their orders are counted one at a time)."""
    repeat = config.repeat_order
    if repeat.enabled:
        count = await session.scalar(select(func.count()).where(Order.member_id == order.member_id))
        if count == repeat.nth:
            granted = await grant(
                session,
                rules,
                "repeat_order",
                repeat,
                order.member_id,
                f"order:{repeat.nth}",
                repeat,
                reason="复购赠礼",
                now=now,
            )
            if granted is not None and granted.balance is not None:
                balance = granted.balance
    if config.order_notice.enabled and points > 0:
        payload = {
            "order": order.shop_order_id,
            "points": points,
            "balance": balance,
            "boost": boost.name if boost else None,
            "boost_points": boost.extra if boost else 0,
        }
        await record_event(session, order.member_id, ORDER_CREDITED, payload, now)
