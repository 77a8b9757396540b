"""What a member sees in chat: points, tier progress, benefits, coupons, binding a receipt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient

from bot import wiring
from messages import copy
from models.coupons import issue_coupon
from models.members import find_member
from tests.bot.api.test_api import call, follower, order
from tests.helpers import PLAIN, push

OPENID = "o_api_member01"


async def say(client: TestClient, text: str, openid: str = OPENID) -> str:
    answer = await push(client, PLAIN, PLAIN.text(openid, text))
    assert answer.reply is not None
    return answer.reply["Content"]


async def test_new_follower_asking_for_points_gets_a_friendly_answer(client: TestClient) -> None:
    await follower(client, OPENID)
    reply = await say(client, "积分")
    assert reply.startswith(copy.POINTS_NONE)
    assert "绑定码" in reply


async def test_points_show_balance_expiry_and_recent_changes(client: TestClient) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("C-1", amount_fen=12_300))
    await call(
        client,
        "POST",
        "/members/o_api_member01/points",
        {
            "kind": "redeem",
            "points": -23,
            "reason": "兑换咖啡券",
            "idempotency_key": "redeem-coffee",
        },
    )
    # An old order whose points expire within 30 days.
    old = (datetime.now(UTC) - timedelta(days=350)).isoformat()
    await call(client, "POST", "/orders", order("C-0", amount_fen=5_000) | {"paid_at": old})
    reply = await say(client, "积分？")
    lines = reply.splitlines()
    assert lines[0] == "您当前可用积分：150 分"
    assert "⏰ 其中" in lines[1]
    assert "50 分将于" in lines[1]
    assert lines[2] == copy.POINTS_RECENT_TITLE
    assert lines[3].endswith("订单 C-0 +50")
    assert lines[4].endswith("积分兑换 -23")


async def test_menu_click_asks_for_points(client: TestClient) -> None:
    await follower(client, OPENID)
    answer = await push(client, PLAIN, PLAIN.event(OPENID, "CLICK", "MENU_POINTS"))
    assert answer.reply is not None
    assert answer.reply["Content"].startswith(copy.POINTS_NONE)


async def test_tier_says_exactly_what_reaches_the_next(client: TestClient) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("T-1", amount_fen=10_000))
    reply = await say(client, "等级")
    assert reply.splitlines() == [
        "您当前是【普通会员】（无）",
        "再消费 3 次或 ¥1,900 即可升级为银卡会员（按近12个月的消费计算）",
    ]
    for n in range(2, 5):
        await call(client, "POST", "/orders", order(f"T-{n}", amount_fen=10_000))
    assert (
        (await say(client, "会员"))
        .splitlines()[1]
        .startswith("再消费 3 次或 ¥4,600 即可升级为金卡会员")
    )


async def test_benefits_list_the_tier_and_the_next(client: TestClient) -> None:
    await follower(client, OPENID)
    reply = await say(client, "权益")
    assert reply.splitlines()[0] == "【普通会员】专享权益："
    assert "升级为银卡会员可享" in reply


async def test_the_priority_lane_is_a_benefit_of_the_tiers_served_first(
    client: TestClient,
) -> None:
    """专属客服 is promised to diamond members, the tier the queue serves first as shipped."""
    await follower(client, OPENID)
    assert "专属客服" not in await say(client, "权益")
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        member.tier = "diamond"
    reply = await say(client, "权益")
    assert reply.splitlines()[0] == "【钻石会员】专享权益："
    assert "专属客服" in reply


async def test_my_coupons(client: TestClient) -> None:
    await follower(client, OPENID)
    assert await say(client, "我的券") == copy.COUPONS_NONE
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        issued = await issue_coupon(
            session,
            client.app[wiring.CONFIG].programme,
            member.id,
            "full_300_50",
            reason="测试",
            key="t-coupon-1",
            now=datetime.now(UTC),
        )
    reply = await say(client, "我的券")
    assert reply.splitlines()[0] == "您有 1 张可用优惠券："
    assert f"满300减50（券码 {issued.coupon.code}）" in reply


async def test_binding_code_links_the_follower_with_history_and_points(
    client: TestClient,
) -> None:
    _, created = await call(
        client, "POST", "/members/binding-codes", {"customer_ref": "CRM-7", "name": "张三"}
    )
    by_ref = order("SHOP-1", amount_fen=30_000) | {"customer_ref": "CRM-7"}
    del by_ref["openid"]
    await call(client, "POST", "/orders", by_ref)
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("WX-1", amount_fen=1_000))  # 10 as a follower
    reply = await say(client, f"绑定 {created['code'].lower()}")
    assert reply == copy.BIND_OK.format(balance=310)
    _, member = await call(client, "GET", f"/members/{OPENID}")
    assert (member["customer_ref"], member["name"], member["balance"]) == ("CRM-7", "张三", 310)
    assert (await say(client, "积分")).startswith("您当前可用积分：310 分")
    assert await say(client, created["code"], openid="o_someone_else") == copy.BIND_USED


async def test_wrong_codes_are_refused_then_throttled(client: TestClient) -> None:
    await follower(client, OPENID)
    for _ in range(5):
        assert await say(client, "AB23CD45") == copy.BIND_INVALID
    assert await say(client, "AB23CD45") == copy.BIND_THROTTLED


async def test_help_lists_what_the_bot_now_does(client: TestClient) -> None:
    reply = await say(client, "帮助")
    for keyword in ("【积分】", "【等级】", "【权益】", "【我的券】", "【推荐】", "【我的推荐】"):
        assert keyword in reply
    assert "【人工】" in reply


async def test_many_first_time_members_asking_at_once_are_all_answered(
    client: TestClient,
) -> None:
    # Each first contact opens a unit of work; the answer must not need a second connection.
    # 24 at once is more than SQLite's pool holds (5 + 10 overflow), so a second connection
    # would run it dry; 40 at once on SQLite, whose writers queue on one lock, once took all
    # of the 4 s reply budget in a CI run whose other worker was busy.
    answers = await asyncio.gather(
        *(push(client, PLAIN, PLAIN.text(f"o_crowd_{n:06d}", "积分")) for n in range(24))
    )
    assert all(a.reply and a.reply["Content"].startswith(copy.POINTS_NONE) for a in answers)


async def test_a_first_message_is_answered_as_the_same_question_after_it(
    client: TestClient,
) -> None:
    """A member's very first message creates them, and its answer comes without reading their
    points, tier or coupons (nothing of theirs can be on record yet): it must be the answer the
    same question gets once they exist, read from the database."""
    for n, text in enumerate(("积分", "等级", "我的券")):
        openid = f"o_first_words_{n}"
        first = await say(client, text, openid)
        async with client.app[wiring.SESSIONS]() as session:
            assert await find_member(session, openid) is not None
        assert first == await say(client, text, openid), text
