"""Marketing pushes: quiet hours defer, caps skip with a reason, mass sends batch and count."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from bot import wiring
from models.deliveries import MARKETING, PlannedPush, plan
from models.members import Member, find_member
from models.rules import ProgrammeRules
from scheduler.scheduled_pushes import greeting_today, plan_holiday_greetings
from tests.bot.api.test_api import follower
from tests.bot.push.test_delivery import _worker, deliveries
from tests.helpers import PLAIN, push
from tests.wechat_standin import Fault, WeChatStandIn

MASS = "/cgi-bin/message/mass/send"
# 10:00 in Shanghai, and 23:00.
DAYTIME = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
# The shipped quiet hours (tests run without quiet hours unless they set them).
SHIPPED_QUIET_HOURS = {"quiet_hours_start": "22:00", "quiet_hours_end": "08:00"}


async def _marketing(client: TestClient, openid: str, key: str, text: str = "双十一会员日") -> int:
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, openid)
        assert member is not None
        (delivery_id,) = await plan(
            session,
            "campaign",
            MARKETING,
            [PlannedPush(member.id, key, {"text": text})],
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    return delivery_id


async def _quiet_follower(client: TestClient, openid: str) -> None:
    """A follower whose customer-service window has long closed."""
    await follower(client, openid)
    await client.app[wiring.REDIS].delete(f"cs:window:{openid}")


async def test_quiet_hours_defer_and_the_push_goes_in_the_morning(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0, **SHIPPED_QUIET_HOURS})
    await follower(client, "o_mkt_000001")
    delivery_id = await _marketing(client, "o_mkt_000001", "q:1")
    worker = _worker(client)
    assert await worker.deliver(delivery_id, NIGHT) == "deferred"
    (row,) = await deliveries(client)
    morning = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)  # 08:00 the next day in Shanghai
    assert (row.status, row.attempts, row.not_before) == ("queued", 0, morning)
    assert await worker.deliver(delivery_id, morning - timedelta(minutes=1)) == "not_claimed"
    assert standin.sent() == []
    assert await worker.deliver(delivery_id, morning) == "sent"
    assert len(standin.sent()) == 1


async def test_the_daily_cap_skips_with_its_reason_and_service_is_exempt(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0, **SHIPPED_QUIET_HOURS})
    await push(client, PLAIN, PLAIN.text("o_mkt_000002", "你好"))  # a 48-hour window, 5 slots
    first = await _marketing(client, "o_mkt_000002", "cap:1")
    second = await _marketing(client, "o_mkt_000002", "cap:2", "另一条营销")
    worker = _worker(client)
    assert await worker.deliver(first, DAYTIME) == "sent"
    assert await worker.deliver(second, DAYTIME) == "skipped"
    rows = await deliveries(client)
    assert [(r.status, r.reason) for r in rows] == [("sent", None), ("skipped", "frequency_cap")]
    assert len(standin.sent()) == 1


async def test_members_without_a_window_share_one_mass_send_within_their_allowance(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(
        delivery={"workers": 0, "mass_per_month": 1, "marketing_per_day": 5, **SHIPPED_QUIET_HOURS}
    )
    for openid in ("o_mkt_000003", "o_mkt_000004"):
        await _quiet_follower(client, openid)
    ids = [
        await _marketing(client, "o_mkt_000003", "m:3"),
        await _marketing(client, "o_mkt_000004", "m:4"),
    ]
    worker = _worker(client)
    assert [await worker.deliver(i, DAYTIME) for i in ids] == ["batched", "batched"]
    await worker.housekeeping()
    (sent,) = standin.sent(MASS)
    assert sorted(sent["touser"]) == ["o_mkt_000003", "o_mkt_000004"]
    assert sent["text"]["content"] == "双十一会员日"
    rows = await deliveries(client)
    assert {(r.status, r.channel) for r in rows} == {("sent", "mass")}
    assert len({r.wechat_msgid for r in rows}) == 1
    # The month's allowance (1 here; WeChat's is 4) is spent: the next one is skipped.
    again = await _marketing(client, "o_mkt_000003", "m:3b", "下一条")
    assert await worker.deliver(again, DAYTIME + timedelta(days=1)) == "skipped"
    assert (await deliveries(client))[-1].reason == "mass_allowance"


async def test_a_mass_send_answered_late_is_recorded_sent_when_wechat_says_45065(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(
        delivery={"workers": 0, "marketing_per_day": 5}, api_timeout_seconds=0.3
    )
    for openid in ("o_mkt_000005", "o_mkt_000006"):
        await _quiet_follower(client, openid)
    ids = [
        await _marketing(client, "o_mkt_000005", "late:5"),
        await _marketing(client, "o_mkt_000006", "late:6"),
    ]
    worker = _worker(client)
    assert [await worker.deliver(i, DAYTIME) for i in ids] == ["batched", "batched"]
    # WeChat takes the send but answers after the client stopped waiting; the client's retry,
    # with the same clientmsgid, is refused with 45065: the first went out.
    standin.fail_next(MASS, Fault(delay=1.0))
    await worker.housekeeping()
    (sent,) = standin.sent(MASS)
    assert sorted(sent["touser"]) == ["o_mkt_000005", "o_mkt_000006"]
    rows = await deliveries(client)
    assert {(r.status, r.channel, r.reason, r.errcode) for r in rows} == {
        ("sent", "mass", "clientmsgid_exists", 45065)
    }
    assert all(r.sent_at is not None for r in rows)


@pytest.mark.parametrize(
    ("day", "greeted"),
    [
        (date(2027, 1, 1), "元旦"),
        (date(2027, 2, 5), None),  # 农历除夕: not configured
        (date(2027, 2, 6), "春节"),  # the first day only
        (date(2027, 2, 7), None),
        (date(2027, 2, 9), None),  # 补假
        (date(2027, 10, 1), "国庆节"),
        (date(2027, 10, 2), None),
        (date(2026, 11, 11), "双十一"),  # the brand's own day
        (date(2026, 11, 12), None),
    ],
)
def test_which_days_are_greeted(day: date, greeted: str | None) -> None:
    assert greeting_today(ProgrammeRules(), day) == greeted


async def test_holiday_greeting_reaches_its_audience_once(
    app_factory: Callable[..., Any],
) -> None:
    # The benefit rules as configured by default (the 国庆 boost among them).
    client = await app_factory(
        delivery={"workers": 0, **SHIPPED_QUIET_HOURS}, programme={"benefits": {}}
    )
    for n in range(3):
        await follower(client, f"o_mkt_10000{n}")
    await push(client, PLAIN, PLAIN.event("o_mkt_100002", "unsubscribe"))
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == "o_mkt_100000").values(segment="dormant")
        )
    app = client.app
    args = (app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme)
    national_day = datetime(2027, 10, 1, 2, tzinfo=UTC)
    assert await plan_holiday_greetings(*args, national_day) == 2
    assert await plan_holiday_greetings(*args, national_day + timedelta(hours=3)) == 0
    assert await plan_holiday_greetings(*args, national_day + timedelta(days=1)) == 0
    rows = await deliveries(client)
    assert sorted(r.purpose for r in rows) == ["holiday", "holiday"]
    # The 国庆 boost rule is on by default: the greeting offers its double points.
    assert "国庆双倍积分：消费享2倍积分" in rows[0].payload["text"]
    assert all(r.category == MARKETING for r in rows)
