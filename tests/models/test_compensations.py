"""Compensation: once per key, within the staff member's daily limit, also when two requests
race (PostgreSQL, separate sessions at once)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.compensations import (
    Compensated,
    Compensation,
    CompensationRefused,
    DailyLimit,
    compensate,
)
from models.coupons import Coupon
from models.members import Member
from models.rules import ProgrammeRules
from models.staff import Staff

NOW = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
DAY_START = NOW - timedelta(hours=6)
RULES = ProgrammeRules()
AGENT_LIMIT = DailyLimit(coupons=3, points=500)


async def _people(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions.begin() as session:
        member = Member(openid="o_comp_1", subscribed=True, created_at=NOW)
        staff = Staff(
            username="agent_comp", password_hash="x", role="agent", disabled=False, created_at=NOW
        )
        session.add_all([member, staff])
        await session.flush()
        return staff.id, member.id


async def _give(
    sessions: async_sessionmaker[AsyncSession],
    staff: int,
    member: int,
    key: str,
    coupon: bool = True,
    points: int = 0,
    at: datetime = NOW,
) -> Compensated:
    async with sessions.begin() as session:
        return await compensate(
            session,
            RULES,
            staff_id=staff,
            member_id=member,
            coupon_kind="cash_10" if coupon else None,
            points=points,
            reason="物流延误",
            ledger_reason="客服补偿",
            key=key,
            limit=AGENT_LIMIT,
            day_start=DAY_START,
            now=at,
        )


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        coupons = await session.scalar(select(func.count()).select_from(Coupon))
        given = await session.scalar(select(func.count()).select_from(Compensation))
    return coupons or 0, given or 0


async def test_limits_and_keys(sessions: async_sessionmaker[AsyncSession]) -> None:
    staff, member = await _people(sessions)
    first = await _give(sessions, staff, member, "k1")
    again = await _give(sessions, staff, member, "k1")
    assert (again.replayed, again.compensation.id) == (True, first.compensation.id)
    with pytest.raises(CompensationRefused) as refused:  # the key, for something else
        await _give(sessions, staff, member, "k1", coupon=False, points=10)
    assert refused.value.reason == "conflict"
    await _give(sessions, staff, member, "k2")
    await _give(sessions, staff, member, "k3")
    with pytest.raises(CompensationRefused) as refused:
        await _give(sessions, staff, member, "k4")
    assert refused.value.reason == "coupons"
    # Tomorrow's limit is fresh (the day starts where the caller says).
    async with sessions.begin() as session:
        tomorrow = await compensate(
            session,
            RULES,
            staff_id=staff,
            member_id=member,
            coupon_kind="cash_10",
            points=0,
            reason="r",
            ledger_reason="客服补偿",
            key="k5",
            limit=AGENT_LIMIT,
            day_start=DAY_START + timedelta(days=1),
            now=NOW + timedelta(days=1),
        )
    assert not tomorrow.replayed
    await _give(sessions, staff, member, "p1", coupon=False, points=400)
    with pytest.raises(CompensationRefused) as refused:
        await _give(sessions, staff, member, "p2", coupon=False, points=-101)
    assert refused.value.reason == "points"
    assert await _counts(sessions) == (4, 5)


async def test_racing_requests_give_once_and_keep_the_limit(
    sessions: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrent writers: the PostgreSQL lane (SQLite has one writer)")
    staff, member = await _people(sessions)
    # The same form submitted twice at once: one coupon, one compensation.
    results = await asyncio.gather(*(_give(sessions, staff, member, "same") for _ in range(4)))
    assert sorted(r.replayed for r in results) == [False, True, True, True]
    assert await _counts(sessions) == (1, 1)
    # Two coupons left today; four different forms race for them: two win.
    outcomes = await asyncio.gather(
        _give(sessions, staff, member, "a"),
        _give(sessions, staff, member, "b"),
        _give(sessions, staff, member, "c"),
        _give(sessions, staff, member, "d"),
        return_exceptions=True,
    )
    assert sum(isinstance(o, Compensated) for o in outcomes) == 2
    assert all(isinstance(o, Compensated | CompensationRefused) for o in outcomes)
    assert await _counts(sessions) == (3, 3)
