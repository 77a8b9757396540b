"""A member's first message creates the member once, however many arrive at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.base import on_its_own
from models.members import Member, ensure_member_id

NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize("alone", [False, True], ids=["in_tx", "on_its_own"])
async def test_first_messages_at_once_create_one_member_and_all_get_its_id(
    sessions: async_sessionmaker[AsyncSession], alone: bool
) -> None:
    """Eight first messages at once, each in its own session: in a transaction, and on its
    own (what the dispatcher does: autocommit on PostgreSQL)."""

    async def first_message() -> tuple[int, bool]:
        if alone:
            async with on_its_own(sessions) as session:
                return await ensure_member_id(session, "o_first_000001", NOW)
        async with sessions() as session:
            answer = await ensure_member_id(session, "o_first_000001", NOW)
            await session.commit()
            return answer

    answers = await asyncio.gather(*(first_message() for _ in range(8)))
    ids = {member_id for member_id, _ in answers}
    assert sum(created for _, created in answers) == 1  # one of them made it
    async with sessions() as session:
        rows = await session.execute(select(Member.id, Member.subscribed, Member.created_at))
        members = rows.all()
        count = await session.scalar(select(func.count()).select_from(Member))
    assert count == 1
    assert ids == {members[0].id}
    assert members[0].subscribed is True
    assert members[0].created_at == NOW


async def test_a_known_member_keeps_its_row(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        member = Member(openid="o_first_000002", subscribed=False, created_at=NOW)
        session.add(member)
        await session.commit()
    async with sessions() as session:
        assert await ensure_member_id(session, "o_first_000002", NOW) == (member.id, False)
        await session.commit()
        subscribed = await session.scalar(select(Member.subscribed).where(Member.id == member.id))
    assert subscribed is False
