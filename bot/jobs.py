"""Programme jobs that run over all members, callable from the CLI now and the scheduler later.

Each job is set-based SQL over the whole programme and is safe to run again (it only does
what is due).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.coupons import expire_coupons
from models.ledger import expire_due_lots
from models.rules import ProgrammeRules
from models.segments import refresh_segments
from models.tier_review import reevaluate_tiers

JobFunction = Callable[[async_sessionmaker[AsyncSession], ProgrammeRules, datetime], Awaitable[str]]


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    run: JobFunction


async def _expire_points(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, now: datetime
) -> str:
    async with sessions() as session:
        points = await expire_due_lots(session, now)
    return f"{points} points expired"


async def _expire_coupons(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, now: datetime
) -> str:
    async with sessions.begin() as session:
        count = await expire_coupons(session, now)
    return f"{count} coupons marked expired"


async def _reevaluate_tiers(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, now: datetime
) -> str:
    async with sessions() as session:
        review = await reevaluate_tiers(session, rules, now)  # commits per batch
    return (
        f"{review.evaluated} members: {review.upgraded} up, {review.downgraded} down, "
        f"top-spender threshold {review.top_spend_threshold_fen} fen"
    )


async def _refresh_segments(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, now: datetime
) -> str:
    async with sessions() as session:
        counts = await refresh_segments(session, rules, now)  # commits per batch
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


JOBS = {
    job.name: job
    for job in (
        Job("expire-points", "expire point lots that are due, set-based", _expire_points),
        Job("expire-coupons", "mark coupons past their validity as expired", _expire_coupons),
        Job(
            "reevaluate-tiers",
            "re-evaluate every member's tier (downgrades happen only here)",
            _reevaluate_tiers,
        ),
        Job("refresh-segments", "recompute every member's RFM segment", _refresh_segments),
    )
}
