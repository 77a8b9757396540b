"""The points ledger: invariants under any sequence of operations, real concurrency, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.util import await_only

from bot.database import create_engine, create_sessionmaker
from models import Base
from models.binding import claim_binding_code, create_binding_code
from models.ledger import (
    InsufficientPoints,
    LedgerEntry,
    PointLot,
    credit,
    debit,
    expire_due_lots,
    take_back,
    verify_ledger,
)
from models.members import Member
from models.order_posting import lock_order, record_order, refund_order
from models.orders import Order, OrderIn, Refund, RefundTooLarge, lot_expiry
from models.rules import ProgrammeRules
from tests.conftest import QUIET_BENEFITS

# The ledger's own rules: no benefit rule adds to what an order earns (tests/conftest.py).
RULES = ProgrammeRules.model_validate({"benefits": QUIET_BENEFITS})
START = datetime(2026, 1, 1, 4, tzinfo=UTC)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``condition`` holds (polled: the state is in the database; a minute at most)."""
    try:
        async with asyncio.timeout(60):
            while not await condition():  # noqa: ASYNC110 - the state is in the database
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def _waiting_for_locks(sessions: async_sessionmaker[AsyncSession], count: int) -> Any:
    """A condition: ``count`` sessions of this database are waiting for a lock."""

    async def condition() -> bool:
        async with sessions() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        return waiting == count

    return condition


async def _lock_member(session: AsyncSession, member_id: int) -> None:
    await session.execute(select(Member.id).where(Member.id == member_id).with_for_update())


async def _order(
    sessions: async_sessionmaker[AsyncSession], member_id: int, shop_id: str, fen: int, at: datetime
) -> int:
    async with sessions.begin() as session:
        member = await session.get_one(Member, member_id)
        outcome = await record_order(
            session, RULES, member, OrderIn(shop_id, member_id, fen, at, "pos"), at
        )
        return outcome.points


async def _refund(
    sessions: async_sessionmaker[AsyncSession],
    shop_id: str,
    fen: int | None,
    refund_id: str,
    at: datetime,
) -> Refund:
    async with sessions.begin() as session:
        order = await lock_order(session, shop_id)
        assert order is not None
        return (await refund_order(session, order, fen, refund_id, at)).refund


async def _lots(sessions: async_sessionmaker[AsyncSession], member_id: int) -> list[tuple]:
    """(order's shop id or None, remaining, expired points) of the member's lots, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(Order.shop_order_id, PointLot.remaining, PointLot.expired_points)
            .outerjoin(Order, Order.id == PointLot.order_id)
            .where(PointLot.member_id == member_id)
            .order_by(PointLot.id)
        )
        return [tuple(row) for row in rows]


async def _mismatches(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as session:
        return [m async for m in verify_ledger(session)]


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


async def test_concurrent_refunds_of_one_order_reverse_its_points_once(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = pg_sessions
    member_id = await _member(sessions, "o_refund_race")
    assert await _order(sessions, member_id, "RR-1", 10_000, START) == 100
    async with sessions.begin() as session:
        # Points a second reversal could take, were it let through.
        await credit(
            session,
            member_id,
            500,
            kind="bonus",
            reason="t",
            key="bonus-1",
            at=START,
            expires_at=START + timedelta(days=365),
        )

    async def refund(refund_id: str) -> str:
        try:
            await _refund(sessions, "RR-1", 6_000, refund_id, START + timedelta(hours=1))
        except RefundTooLarge:
            return "too large"
        return "ok"

    # Hold the member's row until both refunds are under way, so both run into each other.
    async with asyncio.TaskGroup() as group, sessions() as blocker:
        await _lock_member(blocker, member_id)
        refunds = [group.create_task(refund(refund_id)) for refund_id in ("RF-A", "RF-B")]
        await _until(_waiting_for_locks(sessions, 2), "both refunds waiting")
        await blocker.commit()
    assert sorted(task.result() for task in refunds) == ["ok", "too large"]
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.shop_order_id == "RR-1"))
        assert order is not None
        assert (order.refunded_fen, order.points_reversed) == (6_000, 60)
        assert (await session.scalars(select(Refund.points_reversed))).all() == [60]
    assert await _balance(sessions, member_id) == 600 - 60
    assert await _mismatches(sessions) == []


async def test_a_redemption_waits_for_the_expiry_batch_instead_of_deadlocking(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = pg_sessions
    member_id = await _member(sessions, "o_deadlock_01")
    async with sessions.begin() as session:
        for key, points, days in (("due", 100, 30), ("later", 50, 400)):
            await credit(
                session,
                member_id,
                points,
                kind="earn",
                reason="t",
                key=key,
                at=START,
                expires_at=START + timedelta(days=days),
            )
    at = START + timedelta(days=31)

    async def expire() -> int:
        async with sessions() as session:
            return await expire_due_lots(session, at)

    async def redeem() -> None:
        async with sessions.begin() as session:
            await debit(session, member_id, 30, kind="redeem", reason="兑换", key="r-1", at=at)

    # The batch queues for the member first, the redemption (which has due lots to expire)
    # second: the order in which the old code took the lots before the member and deadlocked.
    async with asyncio.TaskGroup() as group, sessions() as blocker:
        await _lock_member(blocker, member_id)
        batch = group.create_task(expire())
        await _until(_waiting_for_locks(sessions, 1), "the expiry batch waiting")
        redemption = group.create_task(redeem())
        await _until(_waiting_for_locks(sessions, 2), "the redemption waiting")
        await blocker.commit()
    assert (batch.result(), redemption.result()) == (100, None)
    assert await _balance(sessions, member_id) == 20
    assert await _mismatches(sessions) == []


async def test_redemptions_refunds_and_the_expiry_job_at_once_keep_the_ledger(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = pg_sessions
    ids = [await _member(sessions, f"o_mix_{n:07d}") for n in range(4)]
    for n, member_id in enumerate(ids):
        await _order(sessions, member_id, f"MX-{n}", 20_000, START)  # due at `at`
        await _order(sessions, member_id, f"MY-{n}", 10_000, START + timedelta(days=300))
    at = START + timedelta(days=400)

    async def expire() -> str:
        async with sessions() as session:
            await expire_due_lots(session, at, batch=2)
        return "expired"

    async def redeem(member_id: int, n: int) -> str:
        try:
            async with sessions.begin() as session:
                await debit(
                    session, member_id, 40, kind="redeem", reason="兑换", key=f"m-{n}", at=at
                )
        except InsufficientPoints:
            return "refused"
        return "redeemed"

    async def refund(shop_id: str, n: int) -> str:
        await _refund(sessions, shop_id, 5_000, f"mf-{n}", at)
        return "refunded"

    work: list[Awaitable[str]] = [expire()]
    for n, member_id in enumerate(ids):
        work += [
            redeem(member_id, 2 * n),
            refund(f"MX-{n}", 2 * n),
            refund(f"MY-{n}", 2 * n + 1),
            redeem(member_id, 2 * n + 1),
        ]
    outcomes = await asyncio.gather(*work)  # a deadlock would raise here
    assert outcomes.count("refunded") == 8
    assert await _mismatches(sessions) == []
    for member_id in ids:
        # MX's 200 expired (its refund takes none of them again); MY's 100 less 40 per
        # redemption let through and the 50 its refund takes back, as far as they go.
        assert await _balance(sessions, member_id) in (0, 10)
    async with sessions() as session:
        refunds = (await session.scalars(select(Refund))).all()
    assert {(r.points_reversed + r.points_unrecovered + r.points_expired) for r in refunds} == {50}
    assert {r.points_expired for r in refunds if r.points_reversed == 0} == {50}


async def test_a_refund_takes_the_orders_lot_then_the_oldest_others_on_both_lanes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await _member(sessions, "o_lot_order_1")
    day = timedelta(days=1)
    assert await _order(sessions, member_id, "LO-1", 10_000, START) == 100
    async with sessions.begin() as session:
        await debit(session, member_id, 60, kind="redeem", reason="兑换", key="r", at=START + day)
        await credit(
            session,
            member_id,
            50,
            kind="bonus",
            reason="推荐奖励",
            key="bonus",
            at=START + 2 * day,
            expires_at=START + 300 * day,
        )
    assert await _order(sessions, member_id, "LO-2", 3_000, START + 3 * day) == 30
    refund = await _refund(sessions, "LO-1", 5_000, "RF-LO", START + 4 * day)
    assert (refund.points_reversed, refund.points_unrecovered) == (50, 0)
    # 40 from the order's own lot, the other 10 from the oldest other lot: the bonus, which
    # has no order (SQLite took it first, PostgreSQL last).
    assert await _lots(sessions, member_id) == [("LO-1", 0, 0), (None, 40, 0), ("LO-2", 30, 0)]
    assert await _mismatches(sessions) == []


async def test_a_refund_after_the_orders_points_expired_does_not_take_them_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await _member(sessions, "o_expired_rf1")
    assert await _order(sessions, member_id, "EX-1", 10_000, START) == 100
    async with sessions.begin() as session:
        await debit(
            session,
            member_id,
            30,
            kind="redeem",
            reason="兑换",
            key="spent",
            at=START + timedelta(days=1),
        )
    newer = START + timedelta(days=300)
    assert await _order(sessions, member_id, "EX-2", 5_000, newer) == 50
    after = lot_expiry(RULES, START) + timedelta(days=1)
    async with sessions() as session:
        assert await expire_due_lots(session, after) == 70
    assert await _balance(sessions, member_id) == 50

    half = await _refund(sessions, "EX-1", 5_000, "RF-EX1", after)
    rest = await _refund(sessions, "EX-1", None, "RF-EX2", after)
    # 100 points to reverse: 70 had expired (lost once, not taken again); the 30 that were
    # spent come from the newer lot. The first half is all expired points.
    assert (half.points_reversed, half.points_expired, half.points_unrecovered) == (0, 50, 0)
    assert (rest.points_reversed, rest.points_expired, rest.points_unrecovered) == (30, 20, 0)
    assert await _lots(sessions, member_id) == [("EX-1", 0, 70), ("EX-2", 20, 0)]
    assert await _balance(sessions, member_id) == 20
    assert await _mismatches(sessions) == []


async def test_a_binding_merge_with_an_order_committing_meanwhile_keeps_the_ledger(
    pg_sessions: async_sessionmaker[AsyncSession], postgresql_url: str
) -> None:
    sessions = pg_sessions
    openid = "o_merge_race1"
    follower_id = await _member(sessions, openid)
    assert await _order(sessions, follower_id, "MG-1", 10_000, START) == 100
    async with sessions.begin() as session:
        code = (await create_binding_code(session, "CRM-RACE", START, 24)).code
    # The merge runs on its own engine, paused (on the old code) between reading the
    # follower and moving their rows, until the order below has committed.
    merge_engine = create_engine(postgresql_url)
    reached, go = asyncio.Event(), asyncio.Event()

    def pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("UPDATE orders SET member_id"):
            reached.set()
            await_only(go.wait())

    event.listen(merge_engine.sync_engine, "before_cursor_execute", pause)

    async def merge() -> None:
        async with create_sessionmaker(merge_engine).begin() as session:
            await claim_binding_code(session, code, openid, START + timedelta(hours=1))

    async def merge_waiting() -> bool:
        return reached.is_set() or await _waiting_for_locks(sessions, 1)()

    try:
        async with asyncio.TaskGroup() as group, sessions() as order_session:
            member = await order_session.get_one(Member, follower_id)
            data = OrderIn("MG-2", follower_id, 5_000, START, "pos")
            await record_order(order_session, RULES, member, data, START)
            group.create_task(merge())
            await _until(merge_waiting, "the merge under way")
            await order_session.commit()
            go.set()
    finally:
        go.set()
        await merge_engine.dispose()
    async with sessions() as session:
        customer = await session.scalar(select(Member).where(Member.openid == openid))
        assert customer is not None
        assert customer.customer_ref == "CRM-RACE"
        assert customer.points_balance == 150
        lots = await session.scalar(
            select(func.sum(PointLot.remaining)).where(PointLot.member_id == customer.id)
        )
        assert lots == 150
    assert await _mismatches(sessions) == []


operation = st.one_of(
    st.tuples(st.just("order"), st.integers(1, 50_000)),
    # Lots without an order: a bonus with its own expiry, a referral reward, an adjustment.
    st.tuples(st.just("bonus"), st.integers(1, 300), st.integers(1, 500)),
    st.tuples(st.just("referral"), st.integers(1, 300)),
    st.tuples(st.just("adjust"), st.integers(1, 300)),
    st.tuples(st.just("redeem"), st.integers(1, 400)),
    st.tuples(st.just("claw"), st.integers(1, 300)),
    st.tuples(st.just("refund"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("wait"), st.integers(1, 200)),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def lane_url(request: pytest.FixtureRequest) -> str:
    """Each database lane's URL (hypothesis runs many examples in one test: no db_url)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.mark.slow
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_any_sequence_leaves_the_lots_the_rules_say(lane_url: str, ops: list[tuple]) -> None:
    asyncio.run(_run_sequence(lane_url, ops))


@dataclass
class _Lot:
    order: str | None
    remaining: int
    earned_at: datetime
    expires_at: datetime
    expired: int = 0


@dataclass
class _Order:
    amount: int
    earned: int
    refunded: int = 0
    reversed: int = 0
    expired_counted: int = 0


@dataclass
class _Expected:
    """The rules, restated without the database: which lots hold what, and until when."""

    lots: list[_Lot]
    orders: dict[str, _Order]

    def expire(self, now: datetime) -> None:
        for lot in self.lots:
            if lot.remaining and lot.expires_at <= now:
                lot.expired, lot.remaining = lot.remaining, 0

    def take(self, points: int, first_order: str | None = None) -> int:
        """From ``first_order``'s lot first, then the oldest (earned, then created)."""
        ranked = sorted(
            enumerate(self.lots),
            key=lambda pair: (
                (pair[1].order != first_order, pair[1].earned_at, pair[0])
                if first_order
                else (pair[1].earned_at, pair[0])
            ),
        )
        taken = 0
        for _, lot in ranked:
            part = min(lot.remaining, points - taken)
            lot.remaining -= part
            taken += part
        return taken

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots)


async def _run_sequence(url: str, ops: list[tuple]) -> None:
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(text(f"DELETE FROM {table.name}"))
    member_id = await _member(sessions, "o_property_01")
    expected = _Expected([], {})
    now = START
    try:
        for step, op in enumerate(ops):
            if op[0] == "wait":
                now += timedelta(days=op[1])
                async with sessions() as session:
                    await expire_due_lots(session, now)  # commits per batch itself
                expected.expire(now)
            else:
                async with sessions.begin() as session:
                    await _apply(session, expected, member_id, step, op, now)
            await _check(sessions, member_id, expected)
    finally:
        await engine.dispose()


async def _apply(
    session: AsyncSession,
    expected: _Expected,
    member_id: int,
    step: int,
    op: tuple,
    now: datetime,
) -> None:
    """Run one operation on the database and on ``expected``."""
    key, a_year = f"k-{step}", lot_expiry(RULES, now)
    match op:
        case ("order", fen):
            member = await session.get_one(Member, member_id)
            shop_id = f"O-{step}"
            data = OrderIn(shop_id, member_id, fen, now, "pos")
            outcome = await record_order(session, RULES, member, data, now)
            expected.orders[shop_id] = _Order(fen, outcome.points)
            if outcome.points:
                expected.lots.append(_Lot(shop_id, outcome.points, now, a_year))
        case ("bonus", points, days):
            until = now + timedelta(days=days)
            await credit(
                session,
                member_id,
                points,
                kind="bonus",
                reason="b",
                key=key,
                at=now,
                expires_at=until,
            )
            expected.lots.append(_Lot(None, points, now, until))
        case ("referral", points) | ("adjust", points):
            kind = "bonus" if op[0] == "referral" else "adjust"
            await credit(
                session,
                member_id,
                points,
                kind=kind,
                reason=op[0],
                key=key,
                at=now,
                expires_at=a_year,
            )
            expected.lots.append(_Lot(None, points, now, a_year))
        case ("redeem", points):
            expected.expire(now)
            try:
                await debit(session, member_id, points, kind="redeem", reason="r", key=key, at=now)
            except InsufficientPoints as exc:
                assert points > expected.balance == exc.balance  # noqa: PT017
            else:
                assert expected.take(points) == points
        case ("claw", points):
            expected.expire(now)
            reversal = await take_back(
                session, member_id, points, kind="adjust", reason="c", key=key, at=now
            )
            assert reversal.unrecovered == points - expected.take(points)
        case ("refund", index, percent) if expected.orders:
            shop_id = sorted(expected.orders)[index % len(expected.orders)]
            order = expected.orders[shop_id]
            left = order.amount - order.refunded
            if left == 0:
                return
            amount = max(1, left * percent // 100)
            locked = await lock_order(session, shop_id)
            assert locked is not None
            refund = (await refund_order(session, locked, amount, key, now)).refund
            order.refunded += amount
            due = order.earned * order.refunded // order.amount
            points, order.reversed = due - order.reversed, due
            if points == 0:
                assert (refund.points_reversed, refund.points_expired) == (0, 0)
                return
            expected.expire(now)
            own = [lot for lot in expected.lots if lot.order == shop_id]
            own_remaining = sum(lot.remaining for lot in own)
            uncounted = sum(lot.expired for lot in own) - order.expired_counted
            expired = min(max(points - own_remaining, 0), uncounted)
            order.expired_counted += expired
            taken = expected.take(points - expired, first_order=shop_id)
            assert (refund.points_reversed, refund.points_expired, refund.points_unrecovered) == (
                taken,
                expired,
                points - expired - taken,
            )


async def _check(
    sessions: async_sessionmaker[AsyncSession], member_id: int, expected: _Expected
) -> None:
    async with sessions() as session:
        balance = await session.scalar(select(Member.points_balance).where(Member.id == member_id))
        rows = await session.execute(
            select(
                Order.shop_order_id,
                PointLot.remaining,
                PointLot.expires_at,
                PointLot.expired_points,
            )
            .outerjoin(Order, Order.id == PointLot.order_id)
            .order_by(PointLot.id)
        )
        lots = [tuple(row) for row in rows]
        assert [m async for m in verify_ledger(session)] == []
    assert balance == expected.balance >= 0
    assert lots == [
        (lot.order, lot.remaining, lot.expires_at, lot.expired) for lot in expected.lots
    ]
