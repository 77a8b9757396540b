"""RFM segments (DOMAIN.md "RFM segments"): every member's segment, refreshed set-based.

A purchase is an order paid by ``now`` and not fully refunded, as for tiers; spend is net of
refunds. Recency and registration windows are in days of 24 hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import ColumnElement, Subquery, and_, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.members import Member
from models.orders import Order
from models.rules import ProgrammeRules, SegmentRules
from models.tier_review import BATCH, member_id_ranges

# In the order they are tried: the first whose rule a member meets is theirs.
SEGMENTS = ("core", "important", "at_risk", "dormant", "potential", "other")


def _purchases(now: datetime, after: int, last: int) -> Subquery:
    """Per member in ``(after, last]``: last purchase, purchases (lifetime and 12 months), and
    net spend in 12 months."""
    net = Order.amount_fen - Order.refunded_fen
    in_year = Order.paid_at > now - relativedelta(months=12)
    return (
        select(
            Order.member_id.label("member_id"),
            func.max(Order.paid_at).label("last_paid_at"),
            func.count().label("orders"),
            func.count(case((in_year, 1))).label("orders_12m"),
            func.sum(case((in_year, net), else_=0)).label("spend_12m"),
        )
        .where(Order.member_id > after, Order.member_id <= last, Order.paid_at <= now, net > 0)
        .group_by(Order.member_id)
        .subquery()
    )


def _segment(
    rules: SegmentRules, now: datetime, stats: Subquery, created_at: ColumnElement[datetime]
) -> ColumnElement[str]:
    """The segment rules as one CASE over a member's purchases (NULLs: never purchased)."""
    last_paid = stats.c.last_paid_at
    orders = func.coalesce(stats.c.orders, 0)
    orders_12m = func.coalesce(stats.c.orders_12m, 0)
    spend_12m = func.coalesce(stats.c.spend_12m, 0)

    def since(days: int) -> datetime:
        return now - timedelta(days=days)

    return case(
        (
            and_(
                last_paid >= since(rules.core_recent_days),
                orders_12m >= rules.core_min_orders_12m,
                spend_12m >= rules.core_min_spend_fen,
            ),
            literal("core"),
        ),
        (
            and_(
                last_paid >= since(rules.important_recent_days),
                orders_12m >= rules.important_min_orders_12m,
                spend_12m >= rules.important_min_spend_fen,
            ),
            literal("important"),
        ),
        (
            and_(last_paid < since(rules.at_risk_idle_days), orders >= rules.at_risk_min_orders),
            literal("at_risk"),
        ),
        (
            # Having a last purchase already means the at least one purchase "dormant" needs.
            and_(last_paid < since(rules.dormant_idle_days), orders <= rules.dormant_max_orders),
            literal("dormant"),
        ),
        (
            and_(
                created_at > since(rules.potential_registered_days),
                orders >= rules.potential_min_orders,
                spend_12m <= rules.potential_max_spend_fen,
            ),
            literal("potential"),
        ),
        else_=literal("other"),
    )


async def refresh_segments(
    session: AsyncSession, rules: ProgrammeRules, now: datetime, *, batch: int = BATCH
) -> dict[str, int]:
    """Set every member's segment (and ``segment_at = now``; ``segment_since = now`` for
    those whose segment changed); returns members per segment.

    Set-based, ``batch`` members per transaction: commits the session after each batch.
    Core statements: Member objects already loaded are not refreshed.
    """
    members = Member.__table__
    counts = dict.fromkeys(SEGMENTS, 0)
    async for after, last in member_id_ranges(session, batch):
        inner = members.alias("m")
        stats = _purchases(now, after, last)
        assigned = (
            select(
                inner.c.id.label("id"),
                _segment(rules.segments, now, stats, inner.c.created_at).label("segment"),
            )
            .select_from(inner.outerjoin(stats, stats.c.member_id == inner.c.id))
            .where(inner.c.id > after, inner.c.id <= last)
            .subquery("assigned")
        )
        await session.execute(
            update(members)
            # The range on the outer table too, or PostgreSQL scans every member per batch.
            .where(members.c.id > after, members.c.id <= last, members.c.id == assigned.c.id)
            .values(
                segment=assigned.c.segment,
                segment_at=now,
                # A change of segment is an entry (the segment rule's once-per-entry gift).
                segment_since=case(
                    (
                        or_(
                            members.c.segment.is_distinct_from(assigned.c.segment),
                            members.c.segment_since.is_(None),
                        ),
                        now,
                    ),
                    else_=members.c.segment_since,
                ),
            )
        )
        written = await session.execute(
            select(members.c.segment, func.count())
            .where(members.c.id > after, members.c.id <= last, members.c.segment_at == now)
            .group_by(members.c.segment)
        )
        for segment, count in written:
            counts[segment] += count
        await session.commit()
    return counts
