"""Segment entered (seed 002): at-risk → the 回归专属券 with the win-back message, dormant →
¥10 无门槛, once per entry into the segment. A share of the entrants (``holdout_percent``) is
held out: their grant is recorded with nothing given, so the win-back rate of those who got
the offer can be compared with theirs.

An entry is the refresh that moved the member into the segment (``members.segment_since``,
set by models/segments.py); entries of the last ``LOOKBACK`` are served, so a missed day is
caught up and an older entry is never served late."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefit_settings import BenefitsConfig
from models.benefits.periodic import PushFor
from models.benefits.sets import OnBatch, RuleRun, run_gift
from models.members import Member
from models.rules import ProgrammeRules

LOOKBACK = timedelta(days=7)


def entry_period(segment: str, since: datetime) -> str:
    """The grant period of an entry into ``segment`` at ``since``."""
    return f"{segment}:{since:%Y%m%dT%H%M%S}"


async def run_segment_entered(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """Each segment's gift to the members who entered it lately and got nothing for that
    entry yet (holdouts recorded)."""
    settings = config.segment_entered
    run = RuleRun("segment_entered")
    if not settings.enabled:
        run.paused = True
        return run
    table = Member.__table__
    for segment, gift in settings.by_segment.items():
        if gift.empty:
            continue
        entries = (
            await session.scalars(
                select(table.c.segment_since)
                .distinct()
                .where(table.c.segment == segment, table.c.segment_since > now - LOOKBACK)
            )
        ).all()
        for since in sorted(entries):
            await run_gift(
                session,
                rules,
                run,
                settings,
                period=entry_period(segment, since),
                gift_key=segment,
                gift=gift,
                conditions=[table.c.segment == segment, table.c.segment_since == since],
                reason="回归礼遇",
                now=now,
                push=push_for(segment, gift),
                holdout_percent=settings.holdout_percent,
                on_batch=on_batch,
            )
            if run.budget_spent:
                return run
    return run
