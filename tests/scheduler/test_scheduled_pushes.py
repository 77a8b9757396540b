"""Scheduled pushes: the right members, the right copy, once, on the right local day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot import wiring
from models.coupons import Coupon
from models.members import Member
from scheduler.benefit_jobs import plan_birthdays
from scheduler.scheduled_pushes import plan_expiry_reminders, plan_tier_keeping
from tests.bot.api.test_api import call, follower, order
from tests.bot.push.test_delivery import deliveries, eventually, finished
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn


async def _order_days_ago(client: TestClient, order_id: str, openid: str, days: int) -> None:
    paid = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    body = order(order_id, openid, amount_fen=10_000) | {"paid_at": paid}
    status, _ = await call(client, "POST", "/orders", body)
    assert status == 201


async def _expiry(client: TestClient, now: datetime) -> int:
    app = client.app
    return await plan_expiry_reminders(
        app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme, now
    )


async def test_expiry_reminders_at_30_and_7_days_once_each(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await follower(client, "o_exp_00001")
    # Lots earned 345, 360 and 300 days ago expire in about 20, 5 and 65 days.
    await _order_days_ago(client, "E-20", "o_exp_00001", 345)
    await _order_days_ago(client, "E-5", "o_exp_00001", 360)
    await _order_days_ago(client, "E-65", "o_exp_00001", 300)
    await follower(client, "o_exp_00002")
    await _order_days_ago(client, "E-GONE", "o_exp_00002", 345)
    await push(client, PLAIN, PLAIN.event("o_exp_00002", "unsubscribe"))

    now = datetime.now(UTC)
    assert await _expiry(client, now) == 2
    assert await _expiry(client, now) == 0  # a rerun plans nothing
    rows = await deliveries(client)
    assert sorted(r.dedupe_key.split(":")[1] for r in rows) == ["30", "7"]
    assert all("100 积分将于" in r.payload["text"] for r in rows)
    # Fifteen days on, the first lot is inside 7 days: its second reminder, and only that.
    assert await _expiry(client, now + timedelta(days=15)) == 1
    assert len(await deliveries(client)) == 3


async def test_expiry_reminder_reaches_the_member(
    client: TestClient, standin: WeChatStandIn
) -> None:
    await follower(client, "o_exp_00003")
    await _order_days_ago(client, "E-3", "o_exp_00003", 362)
    await push(client, PLAIN, PLAIN.text("o_exp_00003", "你好"))  # opens the 48-hour window
    assert await _expiry(client, datetime.now(UTC)) == 1
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.channel) == ("sent", "custom")
    (message,) = [m for m in standin.sent() if "积分将于" in m["text"]["content"]]
    assert message["touser"] == "o_exp_00003"


async def _with_birthday(client: TestClient, openid: str, birthday: date) -> None:
    await follower(client, openid)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == openid).values(birthday=birthday)
        )


async def _birthdays(client: TestClient, now: datetime) -> int:
    app = client.app
    return await plan_birthdays(
        app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme, now
    )


async def test_birthday_gift_and_greeting_once_on_the_local_day(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _with_birthday(client, "o_bday_00001", date(1990, 12, 1))
    await _with_birthday(client, "o_bday_00002", date(1991, 11, 30))
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == "o_bday_00001").values(tier="silver")
        )
    # 16:30 UTC on 30 November is already 1 December in Shanghai.
    now = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert await _birthdays(client, now) == 1
    assert await _birthdays(client, now + timedelta(hours=2)) == 0
    (row,) = await deliveries(client)
    assert row.dedupe_key.startswith("birthday:2026:")
    async with client.app[wiring.SESSIONS]() as session:
        (coupon,) = (await session.scalars(select(Coupon).where(Coupon.reason == "生日礼"))).all()
    assert coupon.kind == "birthday_gift"
    assert row.payload["text"].startswith("🎂 生日快乐！送您一张【生日礼券】（12月31日前有效）")


async def test_birthday_by_tier_basic_gets_the_greeting_only(
    app_factory: Callable[..., Any],
) -> None:
    """The tier table decides: basic members the month's double points, gold the ¥100 coupon."""
    client = await app_factory(delivery={"workers": 0})
    await _with_birthday(client, "o_bday_basic", date(1990, 12, 1))
    await _with_birthday(client, "o_bday_gold1", date(1990, 12, 1))
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == "o_bday_gold1").values(tier="gold")
        )
    now = datetime(2026, 12, 1, 4, tzinfo=UTC)
    assert await _birthdays(client, now) == 2
    assert await _birthdays(client, now) == 0
    texts = sorted(r.payload["text"] for r in await deliveries(client))
    assert texts[0] == "🎂 生日快乐！本月消费可享2倍积分，祝您生日愉快！"
    assert "【生日礼券100元】" in texts[1]
    async with client.app[wiring.SESSIONS]() as session:
        birthday = select(Coupon.kind).where(Coupon.reason == "生日礼")
        assert (await session.scalars(birthday)).all() == ["birthday_gift_100"]


async def test_a_29_february_birthday_is_kept_on_28_february(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _with_birthday(client, "o_bday_leap1", date(2000, 2, 29))
    noon = timedelta(hours=4)  # noon in Shanghai
    assert await _birthdays(client, datetime(2028, 2, 28, tzinfo=UTC) + noon) == 0  # leap year
    assert await _birthdays(client, datetime(2028, 2, 29, tzinfo=UTC) + noon) == 1
    assert await _birthdays(client, datetime(2027, 2, 28, tzinfo=UTC) + noon) == 1
    assert await _birthdays(client, datetime(2027, 3, 1, tzinfo=UTC) + noon) == 0


async def test_tier_keeping_tells_only_who_would_drop_what_keeps_the_tier(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await follower(client, "o_keep_00001")
    await follower(client, "o_keep_00002")
    # Both reached silver with one ¥2,000 order; one order leaves the 12-month window in 15 days.
    paid = (datetime.now(UTC) - timedelta(days=350)).isoformat()
    old = order("K-OLD", "o_keep_00001", amount_fen=200_000) | {"paid_at": paid}
    assert (await call(client, "POST", "/orders", old))[0] == 201
    recent = order("K-NEW", "o_keep_00002", amount_fen=200_000)
    assert (await call(client, "POST", "/orders", recent))[0] == 201
    app = client.app
    args = (app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme)
    now = datetime.now(UTC)
    assert await plan_tier_keeping(*args, now) == 1
    assert await plan_tier_keeping(*args, now + timedelta(hours=1)) == 0
    (row,) = await deliveries(client)
    assert row.purpose == "tier_keeping"
    assert "再消费 4 次或 ¥2,000 即可保持银卡会员" in row.payload["text"]
    async with app[wiring.SESSIONS]() as session:
        member = await session.get(Member, row.member_id)
    assert member is not None
    assert member.openid == "o_keep_00001"
