"""The programme's figures for the marketers' dashboard, each one grouped statement over all
members (bench/dashboard.py times them on a million).

- members by tier and by segment (followers and customers alike);
- the referral funnel (links made → friends who followed → first orders → rewarded), and
  pushes sent or skipped by purpose in the last 30 days.

The programme's figures against their targets (repurchase, churn, CSAT, NPS, coupon use…) are
models/figures.py's; coupon counts by kind come from models/coupons.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.deliveries import Delivery
from models.members import Member
from models.referrals import Referral, ReferralLink


async def members_by(session: AsyncSession, column: str) -> dict[str, int]:
    """Member counts by ``tier`` or ``segment``."""
    field = Member.tier if column == "tier" else func.coalesce(Member.segment, "none")
    rows = await session.execute(select(field, func.count()).group_by(field).order_by(field))
    return {str(name): int(count) for name, count in rows}


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


async def skipped_without_channel(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Per purpose, the deliveries created since ``since`` that were skipped ``no_channel``:
    a service notice with no template configured for it, to a member outside the 48-hour
    window (marketing never reaches that reason: it falls back to a mass send)."""
    rows = await session.execute(
        select(Delivery.purpose, func.count())
        .where(
            Delivery.created_at >= since,
            Delivery.status == "skipped",
            Delivery.reason == "no_channel",
        )
        .group_by(Delivery.purpose)
        .order_by(Delivery.purpose)
    )
    return {purpose: int(count) for purpose, count in rows}
