"""Member events (models/events.py) turned into pushes through the outbox.

An event is written in the transaction of the change it records; here, in one transaction,
the events still unprocessed become delivery rows (keyed by event, so planning twice plans
once) and are marked processed; the rows go on the stream after that commits.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from bot.tasks import every
from messages import copy, referral_copy
from models.base import utcnow
from models.deliveries import SERVICE, PlannedPush, plan
from models.events import MemberEvent, mark_processed, unprocessed_events
from models.referrals import REFERRAL_REWARDED, REFERRAL_STAR
from models.rules import ProgrammeRules

TIER_UPGRADED = "tier_upgraded"


def _tier_upgraded(event: MemberEvent, rules: ProgrammeRules) -> dict[str, Any]:
    tier = rules.tier(event.payload["to"])
    benefits = "、".join(tier.benefits) or tier.discount
    return {
        "text": copy.TIER_UPGRADED_TEXT.format(name=tier.name, benefits=benefits),
        "fields": {
            "title": copy.TIER_UPGRADED_TITLE.format(name=tier.name),
            "tier": tier.name,
            "benefits": benefits,
            "note": copy.TIER_UPGRADED_NOTE,
        },
    }


def _referral_rewarded(event: MemberEvent, rules: ProgrammeRules) -> dict[str, Any]:
    points = event.payload["points"]
    return {
        "text": referral_copy.REWARDED.format(points=points),
        "fields": {"title": referral_copy.REWARDED.format(points=points), "points": str(points)},
    }


def _referral_star(event: MemberEvent, rules: ProgrammeRules) -> dict[str, Any]:
    text = referral_copy.STAR.format(
        quarter=event.payload["quarter"],
        count=event.payload["referrals"],
        points=event.payload["points"],
    )
    return {"text": text, "fields": {"title": text, "points": str(event.payload["points"])}}


# Event kind → the payload of its push (the kind is also the push's purpose).
_PUSHES = {
    TIER_UPGRADED: _tier_upgraded,
    REFERRAL_REWARDED: _referral_rewarded,
    REFERRAL_STAR: _referral_star,
}


async def plan_event_pushes(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    limit: int = 1000,
) -> int:
    """Plan the pushes for up to ``limit`` unprocessed events; how many events were taken."""
    planned: list[int] = []
    async with sessions.begin() as session:
        events = await unprocessed_events(session, limit)
        for kind, build in _PUSHES.items():
            pushes = [
                PlannedPush(event.member_id, f"{event.kind}:{event.id}", build(event, rules))
                for event in events
                if event.kind == kind
            ]
            planned += await plan(session, kind, SERVICE, pushes, now)
        await mark_processed(session, (event.id for event in events), now)
    await outbox.enqueue(planned)
    return len(events)


async def notify_forever(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    stop: asyncio.Event,
    interval: float = 1.0,
) -> None:
    """Plan event pushes every ``interval`` seconds until ``stop`` is set."""

    async def plan_all() -> None:
        while await plan_event_pushes(sessions, outbox, rules, utcnow()):
            pass

    await every(interval, stop, plan_all, "planning event pushes")
