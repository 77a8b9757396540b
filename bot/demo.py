"""Demo data for a first ``make run``: members to chat as, with orders, points and tiers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.order_intake import take_order
from models.base import utcnow
from models.members import count_members, record_subscribe
from models.orders import OrderIn
from models.rules import ProgrammeRules

DEMO_OPENIDS = [f"o_demo_member_{n:02d}" for n in range(1, 11)]
# Orders per demo member (¥ amounts), so the first few sit at different tiers and progress.
DEMO_ORDERS_YUAN = [
    [128, 256, 399, 88, 520, 199, 699, 1288, 99, 350, 460, 880],
    [299, 150, 620, 90, 480],
    [88, 168],
    [1999],
]


async def load_demo(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, if_empty: bool
) -> int:
    """Create the demo members and their orders; with ``if_empty``, only into an empty
    database. Orders go through the same path as the API's (``take_order``), so points, lots
    and tiers are real."""
    async with sessions() as session:
        if if_empty and await count_members(session):
            return 0
        now = utcnow()
        for index, openid in enumerate(DEMO_OPENIDS):
            member = await record_subscribe(session, openid, now - timedelta(days=30 * index))
            amounts = DEMO_ORDERS_YUAN[index] if index < len(DEMO_ORDERS_YUAN) else []
            for number, yuan in enumerate(amounts):
                paid_at = now - timedelta(days=25 * (len(amounts) - number))
                await take_order(
                    session,
                    rules,
                    member,
                    OrderIn(
                        shop_order_id=f"DEMO-{index + 1:02d}-{number + 1:02d}",
                        member_id=member.id,
                        amount_fen=yuan * 100,
                        paid_at=paid_at,
                        channel="demo",
                    ),
                    now,
                )
        await session.commit()
    return len(DEMO_OPENIDS)
