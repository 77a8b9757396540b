"""Behaviour points (seed 003: 行为积分): completing the profile (birthday and name), once per
member; answering a survey (a rating question), once per member a month. Set-based, daily."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefit_settings import BenefitsConfig
from models.benefits.engine import month_bounds, month_of
from models.benefits.periodic import PushFor
from models.benefits.sets import OnBatch, RuleRun, run_gift
from models.members import Member
from models.ratings import Rating
from models.rules import ProgrammeRules


async def run_profile(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """Points for a complete profile (birthday and name on record), once per member."""
    settings = config.profile
    run = RuleRun("profile")
    if not settings.enabled:
        run.paused = True
        return run
    table = Member.__table__
    await run_gift(
        session,
        rules,
        run,
        settings,
        period="once",
        gift_key="",
        gift=settings,
        conditions=[table.c.birthday.is_not(None), table.c.name.is_not(None), table.c.name != ""],
        reason="完善资料奖励",
        now=now,
        push=push_for("", settings),
        on_batch=on_batch,
    )
    return run


async def run_survey(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """Points for answering a survey question this month, once per member a month."""
    settings = config.survey
    run = RuleRun("survey")
    if not settings.enabled:
        run.paused = True
        return run
    month = month_of(rules, now)
    start, end = month_bounds(rules, month)
    answered = exists().where(
        Rating.member_id == Member.__table__.c.id,
        Rating.answered_at >= start,
        Rating.answered_at < min(end, now),
    )
    await run_gift(
        session,
        rules,
        run,
        settings,
        period=month,
        gift_key="",
        gift=settings,
        conditions=[answered],
        reason="参与调研奖励",
        now=now,
        push=push_for("", settings),
        on_batch=on_batch,
    )
    return run
