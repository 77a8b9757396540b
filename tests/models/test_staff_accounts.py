"""Staff accounts' rules (shared by the command line and the console): usernames, roles, and
never no enabled admin, also when two admins demote each other at once (PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.follow_ups import AT_RISK_CALL
from models.members import Member
from models.ratings import FollowUp
from models.staff import AuditEntry, Staff
from models.staff_accounts import (
    StaffRefused,
    add_account,
    change_role,
    reset_password,
    set_disabled,
)

NOW = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)


async def _add(sessions: async_sessionmaker[AsyncSession], username: str, role: str) -> int:
    async with sessions.begin() as session:
        return (await add_account(session, username, "hash", role, NOW, None)).id


@pytest.mark.parametrize(
    ("username", "role", "reason"),
    [
        ("ab", "agent", "username"),
        ("Agent_Li", "agent", "username"),
        ("agent li", "agent", "username"),
        ("a" * 33, "agent", "username"),
        ("agent_li", "boss", "role"),
    ],
)
async def test_usernames_and_roles_follow_the_rules(
    sessions: async_sessionmaker[AsyncSession], username: str, role: str, reason: str
) -> None:
    async with sessions.begin() as session:
        with pytest.raises(StaffRefused) as refused:
            await add_account(session, username, "hash", role, NOW, None)
    assert refused.value.reason == reason


async def test_there_is_always_an_enabled_admin(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    root = await _add(sessions, "root", "admin")
    with pytest.raises(StaffRefused) as refused:
        await _add(sessions, "root", "agent")
    assert refused.value.reason == "exists"
    for change in (
        lambda s: change_role(s, root, "agent", NOW, root),
        lambda s: set_disabled(s, root, True, NOW, root),
    ):
        async with sessions.begin() as session:
            with pytest.raises(StaffRefused) as refused:
                await change(session)
        assert refused.value.reason == "last_admin"
    second = await _add(sessions, "second", "admin")
    async with sessions.begin() as session:
        assert await change_role(session, root, "agent", NOW, second)
        assert not await change_role(session, root, "agent", NOW, second)  # nothing to do
        assert await reset_password(session, root, "new-hash", NOW, second)
    async with sessions.begin() as session:
        with pytest.raises(StaffRefused):
            await set_disabled(session, second, True, NOW, second)
        with pytest.raises(StaffRefused) as refused:
            await change_role(session, 999_999, "agent", NOW, second)
        assert refused.value.reason == "missing"
    async with sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions == ["staff_add", "staff_add", "staff_role", "staff_password"]


async def test_a_disabled_agents_follow_ups_go_back_to_the_list(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _add(sessions, "root", "admin")
    agent = await _add(sessions, "agent_li", "agent")
    async with sessions.begin() as session:
        member = Member(openid="o_staff_1", subscribed=True, created_at=NOW)
        session.add(member)
        await session.flush()
        session.add(
            FollowUp(
                member_id=member.id,
                purpose=AT_RISK_CALL,
                period="2026-12",
                status="open",
                assigned_to=agent,
                due_at=NOW,
                created_at=NOW,
            )
        )
    async with sessions.begin() as session:
        assert await set_disabled(session, agent, True, NOW, None)
    async with sessions() as session:
        follow_up = await session.scalar(select(FollowUp))
        staff = await session.get_one(Staff, agent)
    assert follow_up is not None
    assert follow_up.assigned_to is None
    assert (staff.disabled, staff.availability) == (True, "offline")
    async with sessions.begin() as session:
        assert await set_disabled(session, agent, False, NOW, None)


async def test_two_admins_demoting_each_other_at_once_leave_one(
    sessions: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrent writers: the PostgreSQL lane (SQLite has one writer)")
    a = await _add(sessions, "admin_a", "admin")
    b = await _add(sessions, "admin_b", "admin")

    async def disable(who: int, by: int) -> bool | StaffRefused:
        try:
            async with sessions.begin() as session:
                return await set_disabled(session, who, True, NOW, by)
        except StaffRefused as exc:
            return exc

    # A demotes themselves and has not committed when B's disabling of B starts: B's change
    # must wait for A's, then see that B is the last admin.
    async with sessions.begin() as first:
        assert await change_role(first, a, "agent", NOW, a)
        second = asyncio.create_task(disable(b, b))
        await _waiting_or_done(sessions, second)
    assert isinstance(await second, StaffRefused)
    async with sessions() as session:
        admins = await session.scalar(
            select(func.count()).where(Staff.role == "admin", Staff.disabled.is_(False))
        )
    assert admins == 1


async def _waiting_or_done(sessions: async_sessionmaker[AsyncSession], task: asyncio.Task) -> None:
    """Until ``task`` has finished or a transaction waits for a lock (seen from another
    connection)."""
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    while not task.done():
        async with sessions() as session:
            if await session.scalar(waiting):
                return
        await asyncio.sleep(0.01)
