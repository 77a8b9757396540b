"""The points ledger: invariants under any sequence of operations, real concurrency, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models import Base
from models.ledger import (
    InsufficientPoints,
    LedgerEntry,
    PointLot,
    credit,
    debit,
    expire_due_lots,
    verify_ledger,
)
from models.members import Member
from models.order_posting import record_order, refund_order
from models.orders import OrderIn
from models.rules import ProgrammeRules

RULES = ProgrammeRules()
START = datetime(2026, 1, 1, 4, tzinfo=UTC)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _member(sessions: async_sessionmaker[AsyncSession], openid: str) -> int:
    async with sessions.begin() as session:
        member = Member(openid=openid, subscribed=True, created_at=START, tags=[])
        session.add(member)
        await session.flush()
        return member.id


async def _balance(sessions: async_sessionmaker[AsyncSession], member_id: int) -> int:
    async with sessions() as session:
        return await session.scalar(select(Member.points_balance).where(Member.id == member_id))


async def test_concurrent_redemptions_never_overspend(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await _member(sessions, "o_race_000001")
    async with sessions.begin() as session:
        await credit(
            session,
            member_id,
            100,
            kind="earn",
            reason="t",
            key="earn-1",
            at=START,
            expires_at=START + timedelta(days=365),
        )

    async def redeem(n: int) -> str:
        try:
            async with sessions.begin() as session:
                await debit(
                    session,
                    member_id,
                    60,
                    kind="redeem",
                    reason="兑换",
                    key=f"redeem-{n}",
                    at=START + timedelta(minutes=1),
                )
        except InsufficientPoints:
            return "refused"
        return "ok"

    outcomes = await asyncio.gather(*(redeem(n) for n in range(6)))
    assert sorted(outcomes) == ["ok"] + ["refused"] * 5
    assert await _balance(sessions, member_id) == 40
    async with sessions() as session:
        assert [m async for m in verify_ledger(session)] == []


async def test_expiry_job_expires_due_lots_set_based(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = [await _member(sessions, f"o_exp_{n:07d}") for n in range(5)]
    async with sessions.begin() as session:
        for n, member_id in enumerate(ids):
            await credit(
                session,
                member_id,
                10,
                kind="earn",
                reason="old",
                key=f"old-{n}",
                at=START,
                expires_at=START + timedelta(days=30),
            )
            await credit(
                session,
                member_id,
                7,
                kind="earn",
                reason="new",
                key=f"new-{n}",
                at=START,
                expires_at=START + timedelta(days=400),
            )
        await debit(
            session,
            ids[0],
            4,
            kind="redeem",
            reason="兑换",
            key="spend-0",
            at=START + timedelta(days=1),
        )
    async with sessions() as session:
        expired = await expire_due_lots(session, START + timedelta(days=31), batch=2)
    assert expired == 6 + 10 * 4  # member 0 had spent 4 of the old lot
    assert [await _balance(sessions, i) for i in ids] == [7] * 5
    async with sessions() as session:
        assert await expire_due_lots(session, START + timedelta(days=31)) == 0
        assert [m async for m in verify_ledger(session)] == []
        kinds = (
            await session.scalars(
                select(LedgerEntry.kind)
                .where(LedgerEntry.member_id == ids[1])
                .order_by(LedgerEntry.id)
            )
        ).all()
    assert kinds == ["earn", "earn", "expire"]


async def test_verify_reports_a_tampered_balance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await _member(sessions, "o_tamper_0001")
    async with sessions.begin() as session:
        await credit(
            session,
            member_id,
            50,
            kind="earn",
            reason="t",
            key="t-1",
            at=START,
            expires_at=START + timedelta(days=365),
        )
        await session.execute(
            text("UPDATE members SET points_balance = 70 WHERE id = :i"), {"i": member_id}
        )
    async with sessions() as session:
        found = [m async for m in verify_ledger(session)]
    assert [(m.member_id, m.balance, m.ledger_sum, m.lots_remaining) for m in found] == [
        (member_id, 70, 50, 50)
    ]


operation = st.one_of(
    st.tuples(st.just("order"), st.integers(1, 50_000)),
    st.tuples(st.just("redeem"), st.integers(1, 400)),
    st.tuples(st.just("refund"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("wait"), st.integers(1, 200)),
)


@pytest.mark.slow
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_any_sequence_keeps_balance_equal_to_lots_and_never_negative(
    sqlite_url: str, ops: list[tuple]
) -> None:
    asyncio.run(_run_sequence(sqlite_url, ops))


async def _run_sequence(url: str, ops: list[tuple]) -> None:
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(text(f"DELETE FROM {table.name}"))
    member_id = await _member(sessions, "o_property_01")
    now, orders = START, []
    for step, op in enumerate(ops):
        if op[0] == "wait":
            now += timedelta(days=op[1])
            async with sessions() as session:
                await expire_due_lots(session, now)  # commits per batch itself
            await _check(sessions, member_id)
            continue
        async with sessions.begin() as session:
            member = await session.get_one(Member, member_id)
            match op:
                case ("order", fen):
                    outcome = await record_order(
                        session,
                        RULES,
                        member,
                        OrderIn(f"O-{step}", member_id, fen, now, "pos"),
                        now,
                    )
                    orders.append(outcome.order.shop_order_id)
                case ("redeem", points):
                    before = member.points_balance
                    try:
                        await debit(
                            session,
                            member_id,
                            points,
                            kind="redeem",
                            reason="r",
                            key=f"r-{step}",
                            at=now,
                        )
                    except InsufficientPoints as exc:
                        # Refused only when short, and never after inventing points.
                        assert points > exc.balance  # noqa: PT017
                        assert exc.balance <= before  # noqa: PT017
                case ("refund", index, percent) if orders:
                    from models.orders import find_order

                    order = await find_order(session, orders[index % len(orders)])
                    assert order is not None
                    left = order.amount_fen - order.refunded_fen
                    if left > 0:
                        amount = max(1, left * percent // 100)
                        await refund_order(session, order, amount, f"rf-{step}", now)
        await _check(sessions, member_id)
    await engine.dispose()


async def _check(sessions: async_sessionmaker[AsyncSession], member_id: int) -> None:
    async with sessions() as session:
        balance = await session.scalar(select(Member.points_balance).where(Member.id == member_id))
        remaining = sum((await session.scalars(select(PointLot.remaining))).all())
        assert balance >= 0
        assert balance == remaining
        assert [m async for m in verify_ledger(session)] == []
