"""Choices members make in chat, through the signed webhook: their birthday (once, confirmed,
in any common form, from the next month) and the marketing opt-out (退订 / 恢复推送)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot import wiring
from bot.database import create_engine
from handlers.understanding.slots import NO_YEAR
from messages import chat_copy
from models.deliveries import MARKETING, SERVICE, PlannedPush, plan
from models.members import Member, ensure_member, find_member, record_birthday_once
from models.orders import points_for
from models.rules import ProgrammeRules
from tests.bot.api.test_api import follower
from tests.bot.push.test_delivery import _worker, deliveries
from tests.handlers.test_chat_understanding import say
from tests.helpers import get_member
from tests.wechat_standin import WeChatStandIn

OPENID = "o_api_member01"
DAYTIME = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
async def client(app_factory: Callable[..., Any]) -> TestClient:
    client = await app_factory(delivery={"workers": 0})
    await follower(client, OPENID)
    return client


def _confirm(month: int, day: int) -> str:
    return chat_copy.BIRTHDAY_CONFIRM.format(month=month, day=day)


# What the member types to give their birthday, and the date recorded after 「是」.
GIVEN = [
    (["我的生日是3月5号"], date(NO_YEAR, 3, 5)),
    (["生日", "3-5"], date(NO_YEAR, 3, 5)),
    (["登记生日", "1990年3月5日"], date(1990, 3, 5)),
    (["生日", "0305"], date(NO_YEAR, 3, 5)),
    (["我的生日是十二月二十五号"], date(NO_YEAR, 12, 25)),
    (["生日", "2月29日"], date(NO_YEAR, 2, 29)),
]


@pytest.mark.parametrize(("typed", "recorded"), GIVEN, ids=[" ".join(t) for t, _ in GIVEN])
async def test_a_birthday_in_any_common_form_is_confirmed_then_recorded_from_next_month(
    client: TestClient, typed: list[str], recorded: date
) -> None:
    for text in typed[:-1]:
        assert await say(client, text) == chat_copy.BIRTHDAY_ASK
    assert await say(client, typed[-1]) == _confirm(recorded.month, recorded.day)
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday is None  # nothing before the 「是」
    reply = await say(client, "是")
    assert reply is not None
    assert reply.startswith(f"已登记您的生日：{recorded.month} 月 {recorded.day} 日")
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday == recorded
    zone = client.app[wiring.CONFIG].programme.zone
    today = datetime.now(UTC).astimezone(zone).date()
    bonus_from = member.birthday_bonus_from
    assert bonus_from is not None
    assert bonus_from.day == 1
    assert (bonus_from.year * 12 + bonus_from.month) == (today.year * 12 + today.month) + 1


async def test_a_birthday_is_given_once_only(client: TestClient) -> None:
    await say(client, "我的生日是3月5号")
    await say(client, "是")
    reply = await say(client, "我的生日是4月1日")
    assert reply == chat_copy.BIRTHDAY_ALREADY.format(month=3, day=5)
    assert not (await say(client, "是") or "").startswith("已登记")  # no confirmation pending
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday == date(NO_YEAR, 3, 5)


async def test_two_confirmations_record_one_birthday(client: TestClient) -> None:
    await say(client, "我的生日是3月5号")
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        member.birthday = date(1991, 7, 7)  # staff recorded one meanwhile
    assert await say(client, "是") == chat_copy.BIRTHDAY_ALREADY.format(month=7, day=7)
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday == date(1991, 7, 7)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("我的生日是2月30日", chat_copy.BIRTHDAY_BAD_DATE.format(month=2, day=30)),
        ("我的生日是13月1日", chat_copy.BIRTHDAY_BAD_DATE.format(month=13, day=1)),
        ("我的生日是2090年1月1日", chat_copy.BIRTHDAY_FUTURE),
    ],
)
async def test_bad_dates_get_a_clear_answer_and_record_nothing(
    client: TestClient, typed: str, expected: str
) -> None:
    assert await say(client, typed) == expected
    assert not (await say(client, "是") or "").startswith("已登记")
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday is None


async def test_no_drops_the_date(client: TestClient) -> None:
    assert await say(client, "我的生日是3月5号") == _confirm(3, 5)
    assert await say(client, "不是") == chat_copy.BIRTHDAY_NOT_CONFIRMED
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.birthday is None


async def test_confirmations_at_once_record_one_birthday(db_url: str) -> None:
    """Two 「是」 racing (two devices, a retry): real concurrent sessions, one wins."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers; the race is PostgreSQL's")
    engine = create_engine(db_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions.begin() as session:
            member = await ensure_member(session, "o_birthday_race", datetime.now(UTC))
            member_id = member.id

        async def confirm(day: date) -> bool:
            async with sessions.begin() as session:
                return await record_birthday_once(session, member_id, day, date(2027, 1, 1))

        results = await asyncio.gather(*(confirm(date(NO_YEAR, 3, d)) for d in range(1, 9)))
        assert sorted(results) == [False] * 7 + [True]
        async with sessions() as session:
            recorded = (await session.get_one(Member, member_id)).birthday
        assert recorded == date(NO_YEAR, 3, results.index(True) + 1)
    finally:
        await engine.dispose()


def test_a_birthday_given_in_chat_earns_the_bonus_from_the_next_month() -> None:
    rules = ProgrammeRules()
    member = Member(
        tier="basic", birthday=date(NO_YEAR, 12, 5), birthday_bonus_from=date(2027, 1, 1)
    )
    december = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
    next_december = datetime(2027, 12, 10, 4, 0, tzinfo=UTC)
    assert points_for(rules, member, 10_000, december) == 100
    assert points_for(rules, member, 10_000, next_december) == 100 * int(
        rules.points.birthday_multiplier * Decimal(1)
    )
    member.birthday_bonus_from = None  # recorded by staff: at once
    assert points_for(rules, member, 10_000, december) == 200


async def _planned(client: TestClient, category: str, key: str) -> int:
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        (delivery_id,) = await plan(
            session,
            "campaign" if category == MARKETING else "points_changed",
            category,
            [PlannedPush(member.id, key, {"text": "会员日", "fields": {}})],
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    return delivery_id


@pytest.mark.parametrize("typed", ["退订", "TD", "td", "不要再给我推送了"])
async def test_opting_out_skips_marketing_and_keeps_service_notices(
    client: TestClient, standin: WeChatStandIn, typed: str
) -> None:
    assert await say(client, typed) == chat_copy.OPTED_OUT
    assert await say(client, typed) == chat_copy.ALREADY_OPTED_OUT
    marketing = await _planned(client, MARKETING, "mkt:1")
    service = await _planned(client, SERVICE, "svc:1")
    worker = _worker(client)
    assert await worker.deliver(marketing, DAYTIME) == "skipped"
    assert await worker.deliver(service, DAYTIME) == "sent"
    rows = {row.id: row for row in await deliveries(client)}
    assert (rows[marketing].status, rows[marketing].reason) == ("skipped", "opted_out")
    assert rows[service].status == "sent"
    assert len(standin.sent()) == 1


async def test_resuming_pushes_sends_marketing_again(
    client: TestClient, standin: WeChatStandIn
) -> None:
    assert await say(client, "退订") == chat_copy.OPTED_OUT
    assert await say(client, "恢复推送") == chat_copy.OPTED_IN
    assert await say(client, "恢复推送") == chat_copy.ALREADY_OPTED_IN
    member = await get_member(client, OPENID)
    assert member is not None
    assert member.marketing_opted_out_at is None
    marketing = await _planned(client, MARKETING, "mkt:2")
    assert await _worker(client).deliver(marketing, DAYTIME) == "sent"
