"""The console's clockwork, every few seconds in each web process: assign waiting
conversations (``assignment = "auto"``), put back in the queue those claimed and left
unanswered, and return to the bot those silent for ``idle_minutes``. Each step is a
conditional UPDATE, so processes running it at once never assign a conversation twice.
Campaign runs are started by the scheduler's leader, not here (scheduler/campaigns.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console.settings import ConsoleConfig
from bot.tasks import every
from bot.wechat.handoff import Handoffs
from models.base import utcnow
from models.conversations import assign_waiting, end_idle, requeue_unanswered
from models.members import Member
from models.staff import Staff

SWEEP_SECONDS = 5.0


class ConsoleSweeps:
    """Assignment, claim timeouts and idle returns (see the module's docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handoffs: Handoffs,
        config: ConsoleConfig,
    ) -> None:
        self._sessions = sessions
        self._handoffs = handoffs
        self._config = config

    async def sweep(self, now: datetime | None = None) -> None:
        """One pass of all three (at ``now``: the clock, unless a test fixes it)."""
        now = now or utcnow()
        async with self._sessions.begin() as session:
            requeued = await requeue_unanswered(session, now, self._config.claim_timeout_minutes)
            idle = await end_idle(session, now, self._config.idle_minutes)
            openids = {}
            if idle:
                rows = await session.execute(
                    select(Member.id, Member.openid).where(Member.id.in_([m for _, m in idle]))
                )
                openids = {member_id: openid for member_id, openid in rows}
        for conversation_id in requeued:
            await self._handoffs.publish("requeued", conversation_id)
        for conversation_id, member_id in idle:
            if openid := openids.get(member_id):
                await self._handoffs.finish(openid)
            await self._handoffs.publish("ended", conversation_id, outcome="idle")
        if self._config.assignment == "auto":
            async with self._sessions.begin() as session:
                assigned = await assign_waiting(
                    session, now, self._config.max_open_per_agent, self._config.priority
                )
                names = {}
                if assigned:
                    rows = await session.execute(
                        select(Staff.id, Staff.username).where(
                            Staff.id.in_({staff_id for _, staff_id in assigned})
                        )
                    )
                    names = {staff_id: username for staff_id, username in rows}
            for conversation_id, staff_id in assigned:
                await self._handoffs.publish(
                    "assigned", conversation_id, agent=names.get(staff_id, "")
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every few seconds until ``stop`` is set."""
        await every(SWEEP_SECONDS, stop, self.sweep, "console sweeps")
