"""The programme's figures for the marketers' dashboard, each one grouped statement over all
members (bench/dashboard.py times them on a million).

- members by tier and by segment (followers and customers alike);
- repurchase rate: of the members who bought in the last 12 months, the share who bought at
  least twice;
- churn: of the members who bought in the 12 months before that, the share who have not
  bought since;
- the referral funnel (links made → friends who followed → first orders → rewarded), and
  pushes sent or skipped by purpose in the last 30 days.

Coupon use comes from models/coupons.py, CSAT and NPS by month from models/ratings.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.deliveries import Delivery
from models.members import Member
from models.orders import Order
from models.referrals import Referral, ReferralLink

YEAR = timedelta(days=365)


async def members_by(session: AsyncSession, column: str) -> dict[str, int]:
    """Member counts by ``tier`` or ``segment``."""
    field = Member.tier if column == "tier" else func.coalesce(Member.segment, "none")
    rows = await session.execute(select(field, func.count()).group_by(field).order_by(field))
    return {str(name): int(count) for name, count in rows}


@dataclass(frozen=True, slots=True)
class Retention:
    """Repurchase and churn, with what they are computed from."""

    buyers: int  # bought in the last 12 months
    repeat_buyers: int  # of those, bought at least twice
    earlier_buyers: int  # bought in the 12 months before
    lapsed: int  # of those, no order in the last 12 months

    @property
    def repurchase_rate(self) -> float | None:
        return self.repeat_buyers / self.buyers if self.buyers else None

    @property
    def churn_rate(self) -> float | None:
        return self.lapsed / self.earlier_buyers if self.earlier_buyers else None


async def retention(session: AsyncSession, now: datetime) -> Retention:
    """Repurchase and churn over the last two years of orders, in one pass over them."""
    recent, earlier = now - YEAR, now - 2 * YEAR
    per_member = (
        select(
            Order.member_id,
            func.count(case((Order.paid_at >= recent, 1))).label("recent"),
            func.count(case((Order.paid_at < recent, 1))).label("earlier"),
        )
        .where(Order.paid_at >= earlier, Order.paid_at < now)
        .group_by(Order.member_id)
        .subquery()
    )
    row = (
        await session.execute(
            select(
                func.count(case((per_member.c.recent >= 1, 1))),
                func.count(case((per_member.c.recent >= 2, 1))),
                func.count(case((per_member.c.earlier >= 1, 1))),
                func.count(case(((per_member.c.earlier >= 1) & (per_member.c.recent == 0), 1))),
            )
        )
    ).one()
    return Retention(*(int(v) for v in row))


async def referral_funnel(session: AsyncSession) -> dict[str, int]:
    """Links made → friends who followed through one → first orders → rewarded."""
    links = await session.scalar(select(func.count()).select_from(ReferralLink))
    row = (
        await session.execute(
            select(
                func.count(),
                func.count(Referral.first_order_id),
                func.count(case((Referral.status.in_(("rewarded", "reversed")), 1))),
            )
        )
    ).one()
    return {
        "links": int(links or 0),
        "follows": int(row[0]),
        "first_orders": int(row[1]),
        "rewarded": int(row[2]),
    }


async def pushes_by_purpose(session: AsyncSession, since: datetime) -> dict[str, dict[str, int]]:
    """Per purpose, deliveries created since ``since``: sent, skipped, failed, waiting."""
    rows = await session.execute(
        select(Delivery.purpose, Delivery.status, func.count())
        .where(Delivery.created_at >= since)
        .group_by(Delivery.purpose, Delivery.status)
    )
    figures: dict[str, dict[str, int]] = {}
    for purpose, status, count in rows:
        bucket = status if status in ("sent", "skipped", "failed") else "waiting"
        by_status = figures.setdefault(
            purpose, {"sent": 0, "skipped": 0, "failed": 0, "waiting": 0}
        )
        by_status[bucket] += int(count)
    return dict(sorted(figures.items()))
