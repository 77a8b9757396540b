"""Pushes the programme plans on a clock: each a job (scheduler/jobs.py) that writes delivery
rows in batches and puts them on the outbox. Every row has a dedupe key for its period, so running a
job again (a retry, a second scheduler, a manual run) plans nothing twice."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import holidays
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages import copy
from models.coupons import issue_coupon
from models.deliveries import MARKETING, SERVICE, PlannedPush, plan
from models.ledger import expiring_groups
from models.members import audience, birthday_members
from models.rules import ProgrammeRules, TierRule
from models.tier_review import tier_holders_stats
from models.tiers import Stats, qualifying_tier, top_spend_threshold

POINTS_EXPIRING = "points_expiring"
BIRTHDAY = "birthday"
HOLIDAY = "holiday"
WINBACK = "winback"
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


async def plan_birthdays(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Greet today's birthdays (local date) and issue the birthday coupon with the greeting,
    in one transaction per batch: a member gets the gift and the push, or neither."""
    today = now.astimezone(rules.zone).date()
    planned = 0
    async with sessions() as reader:
        async for batch in birthday_members(reader, today):
            async with sessions.begin() as session:
                pushes = [
                    await _birthday(session, rules, member_id, today, now) for member_id in batch
                ]
                ids = await plan(session, BIRTHDAY, SERVICE, pushes, now)
            await outbox.enqueue(ids)
            planned += len(ids)
    return planned


async def _birthday(
    session: AsyncSession, rules: ProgrammeRules, member_id: int, today: date, now: datetime
) -> PlannedPush:
    key = f"{BIRTHDAY}:{today.year}:{member_id}"
    multiplier = f"{rules.points.birthday_multiplier.normalize():f}"
    if not rules.birthday_coupon:
        text = copy.BIRTHDAY_GREETING.format(multiplier=multiplier)
        return PlannedPush(member_id, key, {"text": text, "fields": _fields(text)})
    issued = await issue_coupon(
        session, rules, member_id, rules.birthday_coupon, reason="生日礼", key=key, now=now
    )
    coupon = issued.coupon
    kind = rules.coupon_kind(coupon.kind)
    until = (coupon.valid_until.astimezone(rules.zone) - timedelta(seconds=1)).date()
    text = copy.BIRTHDAY_GIFT.format(
        coupon=kind.name if kind else coupon.kind,
        code=coupon.code,
        until=until,
        multiplier=multiplier,
    )
    return PlannedPush(member_id, key, {"text": text, "fields": _fields(text)})


def _fields(text: str) -> dict[str, str]:
    return {"title": copy.BIRTHDAY_TITLE, "content": text, "note": copy.BIRTHDAY_NOTE}


async def plan_holiday_greetings(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Greet every follower on the first day of a configured holiday or brand day (local
    date); nothing on other days."""
    today = now.astimezone(rules.zone).date()
    name = greeting_today(rules, today)
    if name is None:
        return 0
    text = copy.HOLIDAY_GREETINGS.get(name) or copy.HOLIDAY_GREETING_DEFAULT.format(name=name)
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


async def plan_winback(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """The monthly win-back offer to the at-risk and dormant segments (once a month each)."""
    month = f"{now.astimezone(rules.zone):%Y-%m}"
    payload = {"text": copy.WINBACK_OFFER}
    return await _plan_for_audience(
        sessions, outbox, now, WINBACK, f"{WINBACK}:{month}", payload, rules.winback_segments
    )


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
