"""Campaign rewards through the API and the console: a bad reward is refused with nothing
written; a rewarded campaign's figures show what it gave and how much of it was redeemed."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from models.campaign_rewards import CampaignReward
from models.campaigns import Campaign
from models.coupons import Coupon
from tests.bot.api.test_api import call, follower
from tests.bot.console.test_console import NO_QUIET_HOURS, add_staff, csrf_of, login
from tests.bot.push.test_delivery import eventually
from tests.scheduler.test_campaigns import APPROVERS, _run, approve, settled, spec


async def campaigns_written(client: TestClient) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        return int(await session.scalar(select(func.count()).select_from(Campaign)) or 0)


@pytest.mark.parametrize(
    ("reward", "field"),
    [
        ({"coupon": "no_such_kind"}, "reward.coupon"),  # not configured
        ({"points": 0}, "reward.points"),
        ({"points": -100}, "reward.points"),
        ({"points": 1_000_000}, "reward.points"),  # absurd
        ({"coupon": "cash_10", "points": 5}, "reward"),  # both
        ({}, "reward"),  # neither
    ],
)
async def test_the_api_refuses_a_bad_reward_and_writes_nothing(
    client: TestClient, reward: dict[str, Any], field: str
) -> None:
    status, body = await call(client, "POST", "/campaigns", spec(reward=reward))
    assert status == 422
    assert body["error"]["field"].startswith(field)
    assert await campaigns_written(client) == 0


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"reward": "coupon", "reward_coupon": ""}, "请选择已配置的券种"),
        ({"reward": "coupon", "reward_coupon": "no_such_kind"}, "请选择已配置的券种"),
        ({"reward": "points", "reward_points": "0"}, "奖励积分需为1到10000之间的整数"),
        ({"reward": "points", "reward_points": "99999"}, "奖励积分需为1到10000之间的整数"),
        ({"reward": "points", "reward_points": "abc"}, "奖励积分需为1到10000之间的整数"),
    ],
)
async def test_the_console_form_refuses_a_bad_reward_and_writes_nothing(
    client: TestClient, form: dict[str, str], error: str
) -> None:
    await add_staff(client, "mia", "marketer")
    await login(client, "mia")
    data = {
        "csrf": await csrf_of(client, "/console/campaigns/new"),
        "name": "彩妆回购",
        "text_a": "彩妆会员日",
        "holdout_percent": "10",
        "schedule": "now",
        **form,
    }
    response = await client.post("/console/campaigns", data=data)
    assert response.status == 422
    assert error in await response.text()
    assert await campaigns_written(client) == 0


async def test_the_figures_show_what_was_given_and_redeemed(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "marketing_per_day": 5}, api=APPROVERS)
    for n in range(30):
        await follower(client, f"o_rwd_fig{n:04d}")
    status, campaign = await call(
        client, "POST", "/campaigns", spec(reward={"coupon": "full_300_50"})
    )
    assert (status, campaign["reward"]) == (
        201,
        {"coupon": "full_300_50", "name": "满300减50", "valid_days": 30},
    )
    actions = f"/campaigns/{campaign['id']}/actions"
    await add_staff(client, "boss", "admin")
    assert (await call(client, "POST", actions, {"action": "submit"}))[0] == 200
    assert (await approve(client, actions))[0] == 200
    assert await _run(client) == 1
    await eventually(lambda: settled(client))

    async def rewarded() -> int:
        async with client.app[wiring.SESSIONS]() as session:
            return int(await session.scalar(select(func.count()).select_from(CampaignReward)) or 0)

    # The record of the send and the reward commit together: settled means rewarded.
    async with client.app[wiring.SESSIONS]() as session:
        code = await session.scalar(select(Coupon.code).order_by(Coupon.id).limit(1))
        owner = await session.scalar(select(Coupon.member_id).where(Coupon.code == code))
    # 满300减50: the redeem call carries the order's amount.
    redeem = {"order_id": "SO-RWD-1", "order_amount_fen": 30_000}
    status, _ = await call(client, "POST", f"/coupons/{code}/redeem", redeem)
    assert status == 200

    status, stats = await call(client, "GET", f"/campaigns/{campaign['id']}/stats")
    assert status == 200
    by = {v["variant"]: v for v in stats["variants"]}
    treated = by["A"]["sent"] + by["B"]["sent"]
    assert treated == await rewarded() > 0
    assert by["holdout"]["rewarded"] == by["holdout"]["coupons_issued"] == 0
    assert sum(by[v]["coupons_redeemed"] for v in "AB") == 1
    for v in "AB":
        assert by[v]["rewarded"] == by[v]["coupons_issued"] == by[v]["sent"]
    assert owner is not None

    await add_staff(client, "mia", "marketer")
    await login(client, "mia")
    page = await (await client.get(f"/console/campaigns/{campaign['id']}")).text()
    assert "满300减50（30天有效）" in page
    redeemed = re.findall(r'<td class="redeemed">([^<]*)</td>', page)
    assert sorted(redeemed)[-1].startswith("1/")
