"""The chat's confirmations grouped per item on PostgreSQL (models/redemption_groups.py): what a
member sees is what they would see alone; the grouping only changes how many calls reach the
database. What a group writes is compared row by row in tests/models/test_rewards_in_db.py,
and the races in tests/models/test_rewards.py run grouped too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import redemption_groups
from models.members import Member
from models.redemption_groups import RedemptionFailed, Redemptions
from models.rewards import Redeemed, RewardItem
from tests.models.test_ledger import _until, _waiting_for_locks
from tests.models.test_rewards import NOW, RULES, balance, item, member_with, year


async def rich(sessions: async_sessionmaker[AsyncSession], n: int) -> list[int]:
    return [
        await member_with(sessions, f"o_grp_{i:02d}", [(1000, NOW, year(2028))]) for i in range(n)
    ]


async def test_confirmations_arriving_together_reach_the_database_in_few_calls(
    pg_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    send = redemption_groups._redeem_group

    async def counted(sessions: Any, item_id: int, group: list[Any]) -> list[Any]:
        sizes.append(len(group))
        return await send(sessions, item_id, group)

    monkeypatch.setattr(redemption_groups, "_redeem_group", counted)
    members = await rich(pg_sessions, 40)
    item_id = await item(pg_sessions, stock=30)
    redemptions = Redemptions(pg_sessions)
    outcomes = await asyncio.gather(
        *(redemptions.redeem(RULES, m, item_id, key=f"k{m}", now=NOW) for m in members)
    )
    assert sum(isinstance(o, Redeemed) for o in outcomes) == 30
    # All forty arrive in one turn of the event loop, before the first call is sent.
    assert sizes == [16, 16, 8]
    assert redemption_groups.GROUP_SIZE == 16
    async with pg_sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 0


async def test_one_members_failure_is_theirs_alone(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A redemption PostgreSQL refuses to write (here a key longer than its column) fails for
    that member, who keeps their points; the rest of the group is redeemed."""
    first, broken, last = await rich(pg_sessions, 3)
    item_id = await item(pg_sessions, stock=10)
    redemptions = Redemptions(pg_sessions)
    outcomes = await asyncio.gather(
        redemptions.redeem(RULES, first, item_id, key="k-first", now=NOW),
        redemptions.redeem(RULES, broken, item_id, key="k" * 300, now=NOW),
        redemptions.redeem(RULES, last, item_id, key="k-last", now=NOW),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Redeemed)
    assert isinstance(outcomes[2], Redeemed)
    assert isinstance(outcomes[1], RedemptionFailed)
    assert [await balance(pg_sessions, m) for m in (first, broken, last)] == [900, 1000, 900]
    async with pg_sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 8


async def test_a_confirmation_cancelled_before_its_group_is_sent_redeems_nothing(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """While one group waits in the database (the first member's row held elsewhere), a second
    confirmation queues; its caller gives up; it is never sent."""
    waiting_on, given_up = await rich(pg_sessions, 2)
    item_id = await item(pg_sessions, stock=10)
    redemptions = Redemptions(pg_sessions)
    async with pg_sessions.begin() as blocker:
        await blocker.execute(select(Member).where(Member.id == waiting_on).with_for_update())
        first = asyncio.create_task(
            redemptions.redeem(RULES, waiting_on, item_id, key="k-1", now=NOW)
        )
        await _until(_waiting_for_locks(pg_sessions, 1), "the group waits for the member")
        second = asyncio.create_task(
            redemptions.redeem(RULES, given_up, item_id, key="k-2", now=NOW)
        )
        await asyncio.sleep(0)  # it queues behind the group in flight
        second.cancel()
    assert isinstance(await first, Redeemed)
    with pytest.raises(asyncio.CancelledError):
        await second
    await redemptions.close()
    assert await balance(pg_sessions, given_up) == 1000
    async with pg_sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 9
