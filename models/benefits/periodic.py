"""The dated rules, set-based over every member: the monthly tier benefit on the 1st, the
birthday gift by tier, and the membership anniversary (纪念日) gift."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import extract, func
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import local_period
from models.benefit_settings import BenefitsConfig, Gift
from models.benefits.engine import month_of
from models.benefits.sets import OnBatch, RuleRun, run_gift
from models.members import Member
from models.rules import ProgrammeRules

# (gift key, gift) → the push for those who got it (purpose, category, payload), or None.
PushFor = Callable[[str, Gift], tuple[str, str, dict[str, Any]] | None]


async def run_by_tier(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    code: str,
    now: datetime,
    push_for: PushFor,
    *,
    period: str,
    conditions: list[Any],
    reason: str,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """Run a by-tier rule (``monthly_tier``, ``birthday``): each tier's gift to the members
    of that tier meeting ``conditions``."""
    settings = getattr(config, code)
    run = RuleRun(code)
    if not settings.enabled:
        run.paused = True
        return run
    members = Member.__table__
    for tier, gift in settings.by_tier.items():
        if gift.empty:
            continue
        await run_gift(
            session,
            rules,
            run,
            settings,
            period=period,
            gift_key=tier,
            gift=gift,
            conditions=[*conditions, members.c.tier == tier],
            reason=reason,
            now=now,
            push=push_for(tier, gift),
            on_batch=on_batch,
        )
        if run.budget_spent:
            break
    return run


async def run_monthly_tier(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """The month's tier coupon (e.g. 银卡 9.5折券) to every member of each tier, once a month."""
    return await run_by_tier(
        session,
        rules,
        config,
        "monthly_tier",
        now,
        push_for,
        period=month_of(rules, now),
        conditions=[],
        reason="月度会员礼遇",
        on_batch=on_batch,
    )


def birthday_today(now: datetime, rules: ProgrammeRules) -> Any:
    """Members whose birthday is today (local; 29 February falls on 28 February off leap
    years), as a condition on the members table."""
    day = now.astimezone(rules.zone).date()
    table = Member.__table__
    month, dom = extract("month", table.c.birthday), extract("day", table.c.birthday)
    same = (month == day.month) & (dom == day.day)
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        same = same | ((month == 2) & (dom == 29))
    return table.c.birthday.is_not(None) & same


async def run_birthdays(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """Today's birthdays' coupon by tier (the tier table decides; tiers without one get the
    birthday month's multiplied points only), once a year."""
    return await run_by_tier(
        session,
        rules,
        config,
        "birthday",
        now,
        push_for,
        period=f"{now.astimezone(rules.zone):%Y}",
        conditions=[birthday_today(now, rules)],
        reason="生日礼",
        on_batch=on_batch,
    )


async def run_anniversaries(
    session: AsyncSession,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    now: datetime,
    push_for: PushFor,
    on_batch: OnBatch | None = None,
) -> RuleRun:
    """The membership anniversary gift: members who joined on today's date in an earlier
    year (local), once a year."""
    settings = config.anniversary
    run = RuleRun("anniversary")
    if not settings.enabled:
        run.paused = True
        return run
    local = now.astimezone(rules.zone)
    joined = local_period(session, Member.__table__.c.created_at, local, "day")
    await run_gift(
        session,
        rules,
        run,
        settings,
        period=f"{local:%Y}",
        gift_key="",
        gift=settings,
        conditions=[
            func.substr(joined, 6, 5) == f"{local:%m-%d}",
            func.substr(joined, 1, 4) < f"{local:%Y}",
        ],
        reason="会员纪念日礼",
        now=now,
        push=push_for("", settings),
        on_batch=on_batch,
    )
    return run
