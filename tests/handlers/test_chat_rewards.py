"""积分兑换 in chat, through the signed webhook: the numbered list with the balance and the
shortfall, 「兑换 N」, 「确认」 once however often it is sent, 「取消」, and every refusal."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from messages import rewards_copy
from models.base import utcnow
from models.members import Member
from models.redemption import redeem
from models.rewards import Redemption, RewardItem, RewardSpec, new_item
from tests.bot.api.test_api import call, follower, order
from tests.handlers.test_chat_loyalty import OPENID, say
from tests.helpers import PLAIN, push


async def add_item(client: TestClient, **fields: Any) -> int:
    spec = {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100}
    async with client.app[wiring.SESSIONS].begin() as session:
        row = new_item(RewardSpec.model_validate({**spec, **fields}), utcnow())
        session.add(row)
        await session.flush()
        return row.id


async def member_with_points(client: TestClient, fen: int) -> None:
    await follower(client, OPENID)
    status, _ = await call(client, "POST", "/orders", order("R-1", amount_fen=fen))
    assert status == 201


async def redemptions(client: TestClient) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        return await session.scalar(select(func.count()).select_from(Redemption))


async def test_an_empty_catalogue_says_so_with_the_balance(client: TestClient) -> None:
    await member_with_points(client, 10_000)
    assert await say(client, "积分兑换") == rewards_copy.EMPTY.format(balance=100)


async def test_the_list_the_confirmation_and_a_coupon_in_my_coupons(client: TestClient) -> None:
    await member_with_points(client, 50_000)
    await add_item(
        client,
        name="无门槛10元券",
        kind="coupon",
        coupon_kind="cash_10",
        delivery=None,
        points_price=300,
    )
    await add_item(client, name="保温杯", points_price=800)
    listing = (await say(client, "积分能换什么")).splitlines()
    assert listing[0] == rewards_copy.TITLE.format(balance=500)
    assert listing[1] == "1. 无门槛10元券：300 积分"
    assert listing[2] == "2. 保温杯：800 积分（还差 300 分）"
    assert listing[3] == rewards_copy.HOW_TO_PICK
    short = await say(client, "兑换 2")
    assert short == rewards_copy.REFUSALS["not_enough_points"].format(shortfall=300)
    question = await say(client, "兑换1")
    assert question.startswith("您将使用 300 积分 兑换【无门槛10元券】")
    done = await say(client, "确认")
    assert done.startswith("✅ 兑换成功！已扣除 300 积分，剩余 200 分。")
    assert "已放入“我的券”" in done
    assert "无门槛10元券" in await say(client, "我的券")
    assert (await say(client, "积分")).startswith("您当前可用积分：200 分")


async def test_the_menu_key_lists_the_catalogue(client: TestClient) -> None:
    await member_with_points(client, 20_000)
    await add_item(client)
    answer = await push(client, PLAIN, PLAIN.event(OPENID, "CLICK", "MENU_REWARDS"))
    assert answer.reply is not None
    assert answer.reply["Content"].startswith(rewards_copy.TITLE.format(balance=200))


async def test_a_gift_gives_a_pickup_code_and_a_number_alone_picks_from_the_list(
    client: TestClient,
) -> None:
    await member_with_points(client, 20_000)
    await add_item(client, name="联名帆布袋", cash_fen=1990)
    await say(client, "积分兑换")
    question = await say(client, "1")
    assert question.startswith("您将使用 100 积分 + ¥19.9 兑换【联名帆布袋】")
    done = await say(client, "确认")
    async with client.app[wiring.SESSIONS]() as session:
        code = await session.scalar(select(Redemption.pickup_code))
    assert code is not None
    assert f"提货码：{code}" in done
    assert rewards_copy.HOW_PICKUP in done
    assert "¥19.9" in done


async def test_the_pending_choice_comes_with_the_gates_round_trip(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """「确认」 finds what it confirms in the gate's answer: no read of its own before the
    redemption (it cost a second round trip per confirmation)."""
    await member_with_points(client, 20_000)
    await add_item(client, name="联名帆布袋")
    await say(client, "积分兑换")
    assert (await say(client, "兑换 1")).startswith("您将使用 100 积分 兑换【联名帆布袋】")
    redis = client.app[wiring.REDIS]
    read: list[str] = []
    get = redis.get

    async def recording(key: str) -> Any:
        read.append(key)
        return await get(key)

    monkeypatch.setattr(redis, "get", recording)
    assert (await say(client, "确认")).startswith("✅")
    assert read == []
    assert await redemptions(client) == 1


async def test_confirm_twice_or_at_once_or_retried_redeems_once(client: TestClient) -> None:
    await member_with_points(client, 100_000)
    await add_item(client, stock=10)
    await say(client, "兑换 1")
    first, second = await asyncio.gather(say(client, "确认"), say(client, "确认"))
    again = await say(client, "确认")
    retried = PLAIN.text(OPENID, "确认", msg_id=424242)
    await push(client, PLAIN, retried)
    await push(client, PLAIN, retried)
    assert await redemptions(client) == 1
    replies = [first, second, again]
    assert sum(r.startswith(rewards_copy.ALREADY_DONE) for r in replies) == 2
    assert (await say(client, "积分")).startswith("您当前可用积分：900 分")
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(RewardItem.stock)) == 9


async def test_cancel_drops_the_choice(client: TestClient) -> None:
    await member_with_points(client, 20_000)
    await add_item(client)
    await say(client, "兑换 1")
    assert await say(client, "取消") == rewards_copy.CANCELLED
    assert await redemptions(client) == 0
    assert await say(client, "兑换第5个") == rewards_copy.PICK_UNKNOWN.format(number=5)


async def test_refusals_at_confirmation_say_which(client: TestClient) -> None:
    await member_with_points(client, 20_000)
    item_id = await add_item(client, stock=1, limit_count=1, limit_period="month")
    await say(client, "兑换 1")
    async with client.app[wiring.SESSIONS].begin() as session:
        (await session.get_one(RewardItem, item_id)).stock = 0
    assert await say(client, "确认") == rewards_copy.REFUSALS["sold_out"]
    async with client.app[wiring.SESSIONS].begin() as session:
        item = await session.get_one(RewardItem, item_id)
        item.stock, item.points_price = 5, 150
    await say(client, "积分兑换")
    await say(client, "兑换 1")
    assert (await say(client, "确认")).startswith("✅")
    opens = utcnow() + timedelta(days=3)
    await add_item(client, name="新品", early_tiers=["gold"], opens_at=opens)
    listing = await say(client, "积分兑换")
    assert "新品" not in listing  # open to gold members only until it opens to all
    assert listing.startswith(rewards_copy.EMPTY.format(balance=50))


async def test_an_item_listed_then_closed_is_refused_with_the_reason(client: TestClient) -> None:
    await member_with_points(client, 50_000)
    item_id = await add_item(client, limit_count=1, limit_period="year")
    await say(client, "积分兑换")
    async with client.app[wiring.SESSIONS].begin() as session:
        member_id = await session.scalar(select(Member.id).where(Member.openid == OPENID))
        rules = client.app[wiring.CONFIG].programme
        await redeem(session, rules, member_id, item_id, key="elsewhere", now=utcnow())
    assert await say(client, "兑换 1") == rewards_copy.REFUSALS["limit_reached"]
    async with client.app[wiring.SESSIONS].begin() as session:
        (await session.get_one(RewardItem, item_id)).status = "retired"
    assert await say(client, "兑换 1") == rewards_copy.REFUSALS["retired"]
