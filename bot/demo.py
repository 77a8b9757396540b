"""Demo data for a first ``make run``: a few members to chat as."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.base import utcnow
from models.members import count_members, record_subscribe

DEMO_OPENIDS = [f"o_demo_member_{n:02d}" for n in range(1, 11)]


async def load_demo(sessions: async_sessionmaker[AsyncSession], if_empty: bool) -> int:
    """Create the demo members; with ``if_empty``, only into an empty database."""
    async with sessions() as session:
        if if_empty and await count_members(session):
            return 0
        now = utcnow()
        for days, openid in enumerate(DEMO_OPENIDS):
            await record_subscribe(session, openid, now - timedelta(days=30 * days))
        await session.commit()
    return len(DEMO_OPENIDS)
