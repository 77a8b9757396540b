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

from bot.outbox import Outbox
from bot.tasks import every
from messages import copy
from models.base import utcnow
from models.deliveries import SERVICE, PlannedPush, plan
from models.events import MemberEvent, mark_processed, unprocessed_events
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


async def plan_event_pushes(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    limit: int = 1000,
) -> int:
    """Plan the pushes for up to ``limit`` unprocessed events; how many were planned."""
    async with sessions.begin() as session:
        events = await unprocessed_events(session, [TIER_UPGRADED], limit)
        pushes = [
            PlannedPush(event.member_id, f"{event.kind}:{event.id}", _tier_upgraded(event, rules))
            for event in events
        ]
        planned = await plan(session, TIER_UPGRADED, SERVICE, pushes, now)
        await mark_processed(session, (event.id for event in events), now)
    await outbox.enqueue(planned)
    return len(planned)


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
