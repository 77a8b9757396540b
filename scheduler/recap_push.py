"""The annual recap push (年度消费回顾): build last year's recaps, then send each member the
link to theirs. A job (scheduler/jobs.py) on the configured date, 1 January by default.

The push says the same to every member (reply 年度回顾), so members outside their
customer-service window share mass sends, which carry one text for many; the member's own link
comes back in chat (handlers/recap.py). The push is a marketing push: a personal summary,
not a notice of a change to the member's points or tier, so quiet hours, frequency caps and
the mass-send allowance apply. Its dedupe
key names the year, so a rerun (a retry, a manual run) plans nothing twice; and since a
recap's token never changes, a rerun would send the same link anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages import recap_copy
from models.deliveries import MARKETING, PlannedPush, plan
from models.recap import build_recaps, recaps_to_send
from models.rules import ProgrammeRules

ANNUAL_RECAP = "annual_recap"


async def plan_recaps(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Build the recaps of the year before ``now`` (local), then plan one push per member
    with a recap who can be reached, in batches; returns the pushes planned.

    The year is the one before the run's local date, whatever the date: the crontab decides
    when (1 January by default), and a late or repeated run still recaps the same year.
    """
    year = now.astimezone(rules.zone).year - 1
    async with sessions() as session:
        await build_recaps(session, year, rules.zone, now)  # commits per batch
    planned = 0
    async with sessions() as reader:
        async for batch in recaps_to_send(reader, year):
            pushes = [
                PlannedPush(
                    link.member_id,
                    f"recap:{year}:{link.member_id}",
                    {"text": recap_copy.PUSH.format(year=year)},
                )
                for link in batch
            ]
            async with sessions.begin() as session:
                ids = await plan(session, ANNUAL_RECAP, MARKETING, pushes, now)
            await outbox.enqueue(ids)
            planned += len(ids)
    return planned
