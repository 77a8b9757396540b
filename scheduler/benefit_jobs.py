"""The set-based benefit rules on a clock (scheduler/jobs.py): each issues its gifts with
INSERT … SELECT over the members (models/benefits/) and plans its push the same way, one batch
of members per transaction; the pushes of a committed batch go on the outbox at once. Each push
is worded from the gift actually issued, and only members who got something are told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages import benefit_copy
from models.benefit_settings import Gift
from models.benefits.behaviour import run_profile, run_survey
from models.benefits.engine import active_benefits, plan_set
from models.benefits.periodic import (
    PushFor,
    birthday_today,
    run_anniversaries,
    run_birthdays,
    run_monthly_tier,
)
from models.benefits.segment import run_segment_entered
from models.benefits.sets import RuleRun, not_granted
from models.deliveries import MARKETING, SERVICE
from models.members import Member
from models.rules import ProgrammeRules

BIRTHDAY = "birthday"
WINBACK = "winback"
MONTHLY_TIER = "monthly_tier"
ANNIVERSARY = "anniversary"
BEHAVIOUR = "behaviour_points"

Runner = Callable[..., Awaitable[RuleRun]]


def _gift(rules: ProgrammeRules, gift: Gift, now: datetime) -> tuple[str, str]:
    """The gift in words and, for a coupon, its validity (issued now)."""
    kind = rules.coupon_kind(gift.coupon) if gift.coupon else None
    until = ""
    if kind is not None:
        until = benefit_copy.until_text(now + timedelta(days=kind.valid_days), rules.zone)
    return benefit_copy.gift_text(kind.name if kind else None, gift.points), until


def _payload(text: str, title: str, note: str) -> dict[str, Any]:
    return {"text": text, "fields": {"title": title, "content": text, "note": note}}


def _multiplier(rules: ProgrammeRules) -> str:
    return f"{rules.points.birthday_multiplier.normalize():f}"


def birthday_push(rules: ProgrammeRules, now: datetime) -> PushFor:
    """The birthday greeting with the tier's gift."""

    def build(tier: str, gift: Gift) -> tuple[str, str, dict[str, Any]]:
        words, until = _gift(rules, gift, now)
        text = benefit_copy.BIRTHDAY_GIFT.format(
            gift=words, until=until, multiplier=_multiplier(rules)
        )
        payload = _payload(text, benefit_copy.BIRTHDAY_TITLE, benefit_copy.BIRTHDAY_NOTE)
        return BIRTHDAY, SERVICE, payload

    return build


def monthly_push(rules: ProgrammeRules, now: datetime) -> PushFor:
    """The month's tier gift."""

    def build(tier: str, gift: Gift) -> tuple[str, str, dict[str, Any]]:
        words, until = _gift(rules, gift, now)
        text = benefit_copy.MONTHLY_TIER.format(tier=rules.tier(tier).name, gift=words, until=until)
        return (
            MONTHLY_TIER,
            SERVICE,
            _payload(text, benefit_copy.GIFT_TITLE, benefit_copy.GIFT_NOTE),
        )

    return build


def segment_push(rules: ProgrammeRules, now: datetime) -> PushFor:
    """The win-back message with the segment's gift (marketing: quiet hours and caps apply)."""

    def build(segment: str, gift: Gift) -> tuple[str, str, dict[str, Any]]:
        words, until = _gift(rules, gift, now)
        template = (
            benefit_copy.WINBACK_AT_RISK if segment == "at_risk" else benefit_copy.WINBACK_DORMANT
        )
        return WINBACK, MARKETING, {"text": template.format(gift=words, until=until)}

    return build


def simple_push(rules: ProgrammeRules, now: datetime, purpose: str, template: str) -> PushFor:
    """A gift's push worded by ``template`` (anniversary, profile, survey)."""

    def build(key: str, gift: Gift) -> tuple[str, str, dict[str, Any]]:
        words, until = _gift(rules, gift, now)
        text = template.format(gift=words, until=until)
        return purpose, SERVICE, _payload(text, benefit_copy.GIFT_TITLE, benefit_copy.GIFT_NOTE)

    return build


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    runner: Runner,
    push_for: PushFor,
) -> RuleRun:
    async with sessions() as session:
        config = await active_benefits(session, rules)
        return await runner(session, rules, config, now, push_for, on_batch=outbox.enqueue)


async def plan_birthdays(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Today's birthdays (local date): the tier's birthday coupon with the greeting (the tier
    table decides), and the greeting alone (the month's multiplied points) for those whose
    tier has no gift or whose rule is paused; once a year each."""
    run = await _run(sessions, outbox, rules, now, run_birthdays, birthday_push(rules, now))
    year = f"{now.astimezone(rules.zone):%Y}"
    text = benefit_copy.BIRTHDAY_GREETING.format(multiplier=_multiplier(rules))
    greeting = _payload(text, benefit_copy.BIRTHDAY_TITLE, benefit_copy.BIRTHDAY_NOTE)
    members = Member.__table__
    async with sessions.begin() as session:
        # Holdouts never apply to birthdays: anyone without this year's grant gets the greeting.
        recipients = select(members.c.id).where(
            birthday_today(now, rules), not_granted("birthday", year)
        )
        ids = await plan_set(
            session, recipients, f"{BIRTHDAY}:{year}:", BIRTHDAY, SERVICE, greeting, now
        )
    await outbox.enqueue(ids)
    return run.pushes + len(ids)


async def plan_segment_entered(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """The segment-entered gifts (at-risk → 满300减50 with the win-back message, dormant →
    ¥10 无门槛), once per entry, a holdout share recorded and given nothing."""
    run = await _run(sessions, outbox, rules, now, run_segment_entered, segment_push(rules, now))
    return run.pushes


async def plan_monthly_tier(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Each tier's monthly coupon (银卡 9.5折券 …), once a month."""
    run = await _run(sessions, outbox, rules, now, run_monthly_tier, monthly_push(rules, now))
    return run.pushes


async def plan_anniversaries(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """The membership anniversary gift, once a year."""
    push = simple_push(rules, now, ANNIVERSARY, benefit_copy.ANNIVERSARY)
    run = await _run(sessions, outbox, rules, now, run_anniversaries, push)
    return run.pushes


async def plan_behaviour_points(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Points for a completed profile (once) and for answering a survey (once a month)."""
    profile = simple_push(rules, now, BEHAVIOUR, benefit_copy.PROFILE_DONE)
    survey = simple_push(rules, now, BEHAVIOUR, benefit_copy.SURVEY_DONE)
    done = await _run(sessions, outbox, rules, now, run_profile, profile)
    answered = await _run(sessions, outbox, rules, now, run_survey, survey)
    return done.pushes + answered.pushes
