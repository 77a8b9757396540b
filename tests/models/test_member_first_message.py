"""A member's first message creates the member once, however many arrive at once; messages
whose member id the gate does not know are looked up and created in groups
(models/new_members.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.database import create_reader, dispose_reader
from models import new_members
from models.base import on_its_own
from models.members import Member, create_members
from models.new_members import NewMembers

NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)


@pytest.fixture
async def reader(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncEngine]:
    """The engine the webhook's lookups read with (on SQLite, reads on the loop's thread)."""
    engine = sessions.kw["bind"]
    reader = create_reader(engine)
    yield reader
    await dispose_reader(reader, engine)


async def _members(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, bool, datetime]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Member.openid, Member.subscribed, Member.created_at).order_by(Member.id)
        )
        return [tuple(row) for row in rows]


async def test_first_messages_at_once_create_one_member_and_all_get_its_id(
    sessions: async_sessionmaker[AsyncSession],
    reader: AsyncEngine,
) -> None:
    members = NewMembers(reader, sessions)
    answers = await asyncio.gather(*(members.member_id("o_first_000001", NOW) for _ in range(8)))
    assert len({member_id for member_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1  # one of them made it
    assert await _members(sessions) == [("o_first_000001", True, NOW)]


async def test_first_messages_in_two_processes_at_once_create_one_member(
    sessions: async_sessionmaker[AsyncSession],
    reader: AsyncEngine,
) -> None:
    """Two processes' groups (two NewMembers) insert the same openids at once: each member is
    made once, and the one insert that lost is told so."""
    first, second = NewMembers(reader, sessions), NewMembers(reader, sessions)
    openids = [f"o_first_race{n:02d}" for n in range(6)]
    answers = await asyncio.gather(
        *(group.member_id(openid, NOW) for openid in openids for group in (first, second))
    )
    by_openid: dict[str, list[tuple[int, bool]]] = {}
    for openid, answer in zip([o for o in openids for _ in range(2)], answers, strict=True):
        by_openid.setdefault(openid, []).append(answer)
    for pair in by_openid.values():
        assert len({member_id for member_id, _ in pair}) == 1
        assert sorted(created for _, created in pair) == [False, True]
    assert len(await _members(sessions)) == len(openids)


async def test_a_known_member_keeps_its_row(
    sessions: async_sessionmaker[AsyncSession], reader: AsyncEngine
) -> None:
    async with sessions() as session:
        member = Member(openid="o_first_000002", subscribed=False, created_at=NOW)
        session.add(member)
        await session.commit()
    later = NOW + timedelta(days=30)
    assert await NewMembers(reader, sessions).member_id("o_first_000002", later) == (
        member.id,
        False,
    )
    assert await _members(sessions) == [("o_first_000002", False, NOW)]


async def test_messages_arriving_meanwhile_go_as_one_group(
    sessions: async_sessionmaker[AsyncSession],
    reader: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten messages at once, known and new members mixed: the first goes alone, the other nine
    as one lookup and one insert; each is answered with its own member."""
    async with sessions() as session:
        session.add(Member(openid="o_first_known", subscribed=True, created_at=NOW))
        await session.commit()
    inserts: list[list[str]] = []

    async def counted(session: AsyncSession, first: dict[str, datetime]) -> dict:
        inserts.append(sorted(first))
        return await create_members(session, first)

    monkeypatch.setattr(new_members, "create_members", counted)
    members = NewMembers(reader, sessions)
    openids = ["o_first_known", *(f"o_first_group{n}" for n in range(8)), "o_first_known"]
    answers = await asyncio.gather(
        *(members.member_id(o, NOW + timedelta(seconds=n)) for n, o in enumerate(openids))
    )
    assert inserts == [[f"o_first_group{n}" for n in range(8)]]  # the first was known
    rows = await _members(sessions)
    ids = await _ids(sessions)
    assert [answer[0] for answer in answers] == [ids[o] for o in openids]
    assert [answer[1] for answer in answers] == [False, *([True] * 8), False]
    # Each member's first message is the time it was made.
    assert [created for _, _, created in rows[1:]] == [
        NOW + timedelta(seconds=n) for n in range(1, 9)
    ]


async def _ids(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(Member.openid, Member.id))
        return {openid: member_id for openid, member_id in rows}


async def test_a_failed_insert_answers_its_group_and_the_next_group_goes(
    sessions: async_sessionmaker[AsyncSession],
    reader: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    async def failing_once(session: AsyncSession, first: dict[str, datetime]) -> dict:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return await create_members(session, first)

    monkeypatch.setattr(new_members, "create_members", failing_once)
    members = NewMembers(reader, sessions)
    with pytest.raises(RuntimeError, match="went away"):
        await members.member_id("o_first_000003", NOW)
    assert await _members(sessions) == []
    assert (await members.member_id("o_first_000003", NOW))[1] is True
    async with on_its_own(sessions) as session:
        count = await session.scalar(select(func.count()).select_from(Member))
    assert count == 1
