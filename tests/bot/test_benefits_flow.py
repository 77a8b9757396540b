"""Benefit rules as a member meets them: the welcome coupon in the follow reply, the points
notice and the 复购赠礼 after orders, the upgrade push listing only what the rules give, and
权益 following a paused rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from bot.push.notifications import plan_event_pushes
from models.base import utcnow
from models.benefits.tables import BenefitOverride
from models.coupons import Coupon
from models.deliveries import Delivery
from tests.bot.api.test_api import call, order
from tests.helpers import PLAIN, push

OPENID = "o_api_member01"
# Every rule at its configured default (the test configuration quiets them otherwise).
ALL_ON = {"benefits": {}}


async def _client(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory(delivery={"workers": 0}, programme=ALL_ON)


async def _say(client: TestClient, text: str) -> str:
    answer = await push(client, PLAIN, PLAIN.text(OPENID, text))
    assert answer.reply is not None
    return str(answer.reply["Content"])


async def _pushes(client: TestClient) -> list[Delivery]:
    app = client.app
    await plan_event_pushes(
        app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme, utcnow()
    )
    async with app[wiring.SESSIONS]() as session:
        query = select(Delivery).where(Delivery.category != "survey").order_by(Delivery.id)
        return list((await session.scalars(query)).all())


async def test_follow_reply_tells_the_welcome_coupon_it_issued(
    app_factory: Callable[..., Any],
) -> None:
    client = await _client(app_factory)
    answer = await push(client, PLAIN, PLAIN.event(OPENID, "subscribe"))
    assert answer.reply is not None
    assert "送您一张【新人首单券】新人礼" in answer.reply["Content"]
    async with client.app[wiring.SESSIONS]() as session:
        kinds = (await session.scalars(select(Coupon.kind))).all()
    assert kinds == ["welcome_first_order"]


async def test_paused_welcome_issues_and_promises_nothing(
    app_factory: Callable[..., Any],
) -> None:
    client = await _client(app_factory)
    async with client.app[wiring.SESSIONS].begin() as session:
        session.add(
            BenefitOverride(rule="welcome", settings={"enabled": False}, updated_at=utcnow())
        )
    answer = await push(client, PLAIN, PLAIN.event(OPENID, "subscribe"))
    assert answer.reply is not None
    assert "新人首单券" not in answer.reply["Content"]


async def test_orders_bring_the_points_notice_and_the_repeat_gift(
    app_factory: Callable[..., Any],
) -> None:
    client = await _client(app_factory)
    await push(client, PLAIN, PLAIN.event(OPENID, "subscribe"))
    assert (await call(client, "POST", "/orders", order("F-1", amount_fen=10_000)))[0] == 201
    assert (await call(client, "POST", "/orders", order("F-2", amount_fen=10_000)))[0] == 201
    rows = await _pushes(client)
    texts = [(r.purpose, r.payload["text"]) for r in rows]
    assert ("order_credited", "订单 F-1 已获得 100 积分，当前积分 100 分。") in texts
    assert (
        "benefit_granted",
        "🎁 感谢您再次选购！复购赠礼已送达：100 积分。回复“我的券”或“积分”查看。",
    ) in texts
    # The second order's notice counts the gift in the balance.
    assert ("order_credited", "订单 F-2 已获得 100 积分，当前积分 300 分。") in texts


async def test_upgrade_push_lists_what_the_rules_give_and_the_gifts_granted(
    app_factory: Callable[..., Any],
) -> None:
    client = await _client(app_factory)
    await push(client, PLAIN, PLAIN.event(OPENID, "subscribe"))
    # ¥5,000 at once: 普通会员 → 金卡会员, two levels.
    assert (await call(client, "POST", "/orders", order("U-1", amount_fen=500_000)))[0] == 201
    (upgrade,) = [r for r in await _pushes(client) if r.purpose == "tier_upgraded"]
    text = upgrade.payload["text"]
    assert text.startswith(
        "🎉 恭喜您升级为【金卡会员】！即日起尊享：全场9折、1.5倍积分、每月一张【会员9折券】"
    )
    assert "升级礼已送达：500 积分。" in text
    assert "连升多级，另赠年度成长奖励：1,000 积分。" in text
    for empty in ("专属客服", "新品优先购", "生日定制礼"):
        assert empty not in text


async def test_benefits_reply_follows_the_active_rules(
    app_factory: Callable[..., Any],
) -> None:
    client = await _client(app_factory)
    await push(client, PLAIN, PLAIN.event(OPENID, "subscribe"))
    reply = await _say(client, "银卡会员有什么权益")
    assert "· 每月一张【会员9.5折券】" in reply
    async with client.app[wiring.SESSIONS].begin() as session:
        session.add(
            BenefitOverride(rule="monthly_tier", settings={"enabled": False}, updated_at=utcnow())
        )
    paused = await _say(client, "银卡会员有什么权益")
    assert "每月" not in paused
    assert "· 全场9.5折" in paused
