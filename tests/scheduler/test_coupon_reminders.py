"""Unused coupons are reminded once, 3 days before they expire, one message per member and
day however many coupons, however often the job runs and on however many schedulers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from models.coupon_reminders import CouponReminder, coupons_to_remind
from models.coupons import Coupon, issue_coupon, redeem_coupon
from models.deliveries import SERVICE, Delivery
from models.members import Member
from models.rules import ProgrammeRules
from scheduler.coupon_reminders import COUPON_EXPIRING, plan_coupon_reminders

RULES = ProgrammeRules()
# 10:30 in Shanghai, when the job runs.
NOW = datetime(2026, 5, 1, 2, 30, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


class Recorder(Outbox):
    """An outbox that keeps the ids it is given."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    async def enqueue(self, delivery_ids: Iterable[int], at: datetime | None = None) -> None:
        self.ids.extend(delivery_ids)


async def add_member(sessions: Sessions, n: int, subscribed: bool = True) -> int:
    async with sessions.begin() as session:
        member = Member(openid=f"o_remind_{n:04d}", subscribed=subscribed, created_at=NOW)
        session.add(member)
        await session.flush()
        return member.id


async def issue(
    sessions: Sessions, member: int, key: str, expires_in: timedelta, kind: str = "cash_10"
) -> Coupon:
    """A 30-day coupon (unless it expires sooner) that ends ``expires_in`` after NOW."""
    valid_days = 30 if expires_in < timedelta(days=30) else 60
    issued_at = NOW + expires_in - timedelta(days=valid_days)
    async with sessions.begin() as session:
        issued = await issue_coupon(
            session,
            RULES,
            member,
            kind,
            reason="测试",
            key=key,
            now=issued_at,
            valid_days=valid_days,
        )
        return issued.coupon


async def run(sessions: Sessions, now: datetime = NOW) -> list[Delivery]:
    """Run the planner; the reminders it planned (and enqueued)."""
    outbox = Recorder()
    planned = await plan_coupon_reminders(sessions, outbox, RULES, now)
    assert planned == len(outbox.ids)
    async with sessions() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.id.in_(outbox.ids)).order_by(Delivery.member_id)
        )
        return list(rows)


async def test_each_member_gets_one_message_for_a_days_coupons(sessions: Sessions) -> None:
    three, one = await add_member(sessions, 1), await add_member(sessions, 2)
    # Three coupons whose last day is 3 May (local), at different hours of that day.
    for n, hours in enumerate((50, 55, 60)):
        kind = ("cash_10", "full_300_50", "birthday_gift")[n]
        await issue(sessions, three, f"t{n}", timedelta(hours=hours), kind=kind)
    single = await issue(sessions, one, "single", timedelta(days=2))
    rows = await run(sessions)
    assert [(r.member_id, r.purpose, r.category) for r in rows] == [
        (three, COUPON_EXPIRING, SERVICE),
        (one, COUPON_EXPIRING, SERVICE),
    ]
    many, alone = rows
    assert many.payload["text"] == (
        "⏰ 您有 3 张优惠券即将到期，有效期至 2026年05月03日：无门槛10元券、满300减50、生日礼券。"
        "回复“我的券”查看券码。"
    )
    assert many.payload["fields"]["count"] == "3"
    assert many.payload["fields"]["day"] == "2026-05-03"
    assert single.code in alone.payload["text"]
    assert "【无门槛10元券】" in alone.payload["text"]


async def test_only_unused_coupons_of_reachable_members_near_expiry(sessions: Sessions) -> None:
    member = await add_member(sessions, 1)
    gone = await add_member(sessions, 2, subscribed=False)
    await issue(sessions, member, "later", timedelta(days=3, hours=1))
    used = await issue(sessions, member, "used", timedelta(days=2))
    async with sessions.begin() as session:
        await redeem_coupon(session, RULES, used.code, member_id=None, shop_order_id="SO", now=NOW)
    await issue(sessions, member, "lapsed", timedelta(hours=-1))
    await issue(sessions, gone, "unsubscribed", timedelta(days=2))
    # Issued two days before it ends: the member was just told of it.
    async with sessions.begin() as session:
        await issue_coupon(
            session, RULES, member, "cash_10", reason="r", key="short", now=NOW, valid_days=2
        )
    assert await run(sessions) == []


async def test_a_coupon_is_reminded_once_across_reruns_and_days(sessions: Sessions) -> None:
    member = await add_member(sessions, 1)
    await issue(sessions, member, "soon", timedelta(days=2))
    await issue(sessions, member, "next", timedelta(days=3, hours=12))
    (first,) = await run(sessions)
    assert await run(sessions) == []  # a rerun plans nothing
    # A day on, the second coupon is due; the first is not reminded again.
    (second,) = await run(sessions, NOW + timedelta(days=1))
    assert first.dedupe_key != second.dedupe_key
    assert await run(sessions, NOW + timedelta(days=1, hours=1)) == []
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CouponReminder)) == 2


async def test_batches_never_split_a_members_coupons(sessions: Sessions) -> None:
    members = [await add_member(sessions, n) for n in range(3)]
    for member in members:
        for n in range(3):
            await issue(sessions, member, f"{member}-{n}", timedelta(days=2, hours=n))
    async with sessions() as session:
        batches = [b async for b in coupons_to_remind(session, NOW, 3, batch=2)]
    seen = [{due.member_id for due in batch} for batch in batches]
    assert sum(len(batch) for batch in batches) == 9
    assert all(not a & b for n, a in enumerate(seen) for b in seen[n + 1 :])


async def test_two_schedulers_at_once_remind_each_coupon_once(
    sessions: Sessions, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("real concurrent transactions: PostgreSQL")
    members = [await add_member(sessions, n) for n in range(20)]
    for member in members:
        for n in range(3):
            await issue(sessions, member, f"{member}-{n}", timedelta(days=2, hours=n))
    outboxes = [Recorder(), Recorder()]
    await asyncio.gather(
        *(plan_coupon_reminders(sessions, outbox, RULES, NOW) for outbox in outboxes)
    )
    async with sessions() as session:
        rows = list(await session.scalars(select(Delivery)))
        reminded = await session.scalar(select(func.count()).select_from(CouponReminder))
    assert sorted(r.member_id for r in rows) == sorted(members)
    assert sorted(outboxes[0].ids + outboxes[1].ids) == sorted(r.id for r in rows)
    assert all(r.payload["fields"]["count"] == "3" for r in rows)
    assert reminded == 60


async def test_zero_days_turns_reminders_off(sessions: Sessions) -> None:
    member = await add_member(sessions, 1)
    await issue(sessions, member, "soon", timedelta(days=1))
    off = RULES.model_copy(update={"coupon_reminder_days": 0})
    assert await plan_coupon_reminders(sessions, Recorder(), off, NOW) == 0
