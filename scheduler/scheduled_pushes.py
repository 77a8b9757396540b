"""Pushes the programme plans on a clock: each a job (scheduler/jobs.py) that writes delivery
rows in batches and puts them on the outbox. Every row has a dedupe key for its period, so running a
job again (a retry, a second scheduler, a manual run) plans nothing twice."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import holidays
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages import benefit_copy, copy
from models.benefits.engine import active_benefits
from models.deliveries import MARKETING, SERVICE, PlannedPush, plan
from models.ledger import expiring_groups
from models.members import audience
from models.rules import ProgrammeRules, TierRule
from models.tier_review import tier_holders_stats
from models.tiers import Stats, qualifying_tier, top_spend_threshold

POINTS_EXPIRING = "points_expiring"
HOLIDAY = "holiday"
TIER_KEEPING = "tier_keeping"


async def plan_expiry_reminders(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Remind members of points expiring within each threshold (30 and 7 days by default).

    Each threshold covers the days down to the next smaller one, so a job that missed days
    sends the reminder that is due, not every reminder at once. Lots that expire together are
    one reminder: to the member they are one amount on one date.
    """
    planned = 0
    thresholds = sorted(set(rules.points.expiry_reminder_days), reverse=True)
    for days, nearer in zip(thresholds, [*thresholds[1:], 0], strict=True):
        after, until = now + timedelta(days=nearer), now + timedelta(days=days)
        async with sessions() as reader:
            async for batch in expiring_groups(reader, after, until):
                pushes = [
                    _reminder(rules, days, member_id, expires_at, points)
                    for member_id, expires_at, points in batch
                ]
                async with sessions.begin() as session:
                    ids = await plan(session, POINTS_EXPIRING, SERVICE, pushes, now)
                await outbox.enqueue(ids)
                planned += len(ids)
    return planned


def _reminder(
    rules: ProgrammeRules, days: int, member_id: int, expires_at: datetime, points: int
) -> PlannedPush:
    # A lot expires at the start of a local day: the last day to use it is the one before.
    last_day = (expires_at.astimezone(rules.zone) - timedelta(seconds=1)).date()
    return PlannedPush(
        member_id,
        f"{POINTS_EXPIRING}:{days}:{member_id}:{expires_at:%Y%m%dT%H%M}",
        {
            "text": copy.POINTS_EXPIRY_REMINDER.format(points=points, day=last_day),
            "fields": {
                "title": copy.POINTS_EXPIRY_TITLE,
                "points": str(points),
                "day": f"{last_day:%Y-%m-%d}",
                "note": copy.POINTS_EXPIRY_NOTE,
            },
        },
    )


async def plan_holiday_greetings(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Greet every follower on the first day of a configured holiday or brand day (local
    date); nothing on other days. The greeting offers a dated boost only while one is active
    that day (国庆's double points while the 国庆 boost rule is on)."""
    today = now.astimezone(rules.zone).date()
    name = greeting_today(rules, today)
    if name is None:
        return 0
    async with sessions() as session:
        config = await active_benefits(session, rules)
    text = benefit_copy.holiday_greeting(name, config, today.month, today.day)
    return await _plan_for_audience(
        sessions, outbox, now, HOLIDAY, f"{HOLIDAY}:{today}", {"text": text}, None
    )


def greeting_today(rules: ProgrammeRules, today: date) -> str | None:
    """The holiday or brand day to greet on ``today``: a configured holiday's first day (its
    make-up rest days and later days do not count), or a brand day."""
    if name := rules.brand_days.get(f"{today:%m-%d}"):
        return name
    calendar = holidays.China(years=today.year, language="zh_CN")
    name = calendar.get(today)
    if name is None or name not in rules.holiday_greetings:
        return None
    first = min(day for day, other in calendar.items() if other == name)
    return name if first == today else None


async def _plan_for_audience(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    now: datetime,
    purpose: str,
    period: str,
    payload: dict[str, Any],
    segments: list[str] | None,
) -> int:
    planned = 0
    async with sessions() as reader:
        async for batch in audience(reader, segments):
            pushes = [
                PlannedPush(member_id, f"{period}:{member_id}", payload) for member_id in batch
            ]
            async with sessions.begin() as session:
                ids = await plan(session, purpose, MARKETING, pushes, now)
            await outbox.enqueue(ids)
            planned += len(ids)
    return planned


async def plan_tier_keeping(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    days_ahead: int = 30,
) -> int:
    """Tell members who would drop at the re-evaluation ``days_ahead`` days from now exactly
    what keeps their tier; one reminder per member per re-evaluation month."""
    at = now + timedelta(days=days_ahead)
    day = at.astimezone(rules.zone).date()
    planned = 0
    rank = {tier.code: n for n, tier in enumerate(rules.tiers)}
    async with sessions() as reader:
        threshold = await top_spend_threshold(reader)
        async for batch in tier_holders_stats(reader, rules, at, now):
            pushes = []
            for member_id, code, stats in batch:
                tier = rules.tier(code)
                if rank[qualifying_tier(rules, stats, threshold).code] >= rank[tier.code]:
                    continue  # keeps the tier (or better) as things stand
                key = f"{TIER_KEEPING}:{day:%Y-%m}:{member_id}"
                pushes.append(PlannedPush(member_id, key, _keep_payload(tier, stats, day)))
            async with sessions.begin() as session:
                ids = await plan(session, TIER_KEEPING, SERVICE, pushes, now)
            await outbox.enqueue(ids)
            planned += len(ids)
    return planned


def _keep_payload(tier: TierRule, stats: Stats, day: date) -> dict[str, Any]:
    orders = max(1, tier.min_orders - stats.orders)
    if tier.min_spend_fen is not None:
        yuan = copy.fen_to_yuan(max(0, tier.min_spend_fen - stats.spend_fen))
        text = copy.TIER_KEEP_BOTH.format(tier=tier.name, day=day, orders=orders, yuan=yuan)
    else:
        text = copy.TIER_KEEP_ORDERS.format(tier=tier.name, day=day, orders=orders)
    fields = {"title": copy.TIER_KEEP_TITLE, "tier": tier.name, "content": text}
    return {"text": text, "fields": fields | {"note": copy.TIER_KEEP_NOTE}}
