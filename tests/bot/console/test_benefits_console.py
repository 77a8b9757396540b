"""The 礼遇规则 page: marketers and admins see every rule with this month's issue against its
budget, pause and resume rules and change their amounts; every change is audited, a bad one
changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from models.benefits.engine import active_benefits
from models.members import Member
from models.staff import AuditEntry
from tests.bot.console.test_console import add_staff, csrf_of, login
from tests.helpers import PLAIN, push

PAGE = "/console/benefits"


async def _marketer(app_factory: Callable[..., Any], **programme: Any) -> TestClient:
    client = await app_factory(programme={"benefits": {}} | programme)
    await add_staff(client, "mkt_zhou", "marketer")
    assert await login(client, "mkt_zhou") == 303
    return client


async def _config(client: TestClient) -> Any:
    async with client.app[wiring.SESSIONS]() as session:
        return await active_benefits(session, client.app[wiring.CONFIG].programme)


async def _audits(client: TestClient) -> list[AuditEntry]:
    async with client.app[wiring.SESSIONS]() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


async def test_the_page_lists_every_rule_in_chinese(app_factory: Callable[..., Any]) -> None:
    client = await _marketer(app_factory)
    page = await (await client.get(PAGE)).text()
    for name in (
        "新人礼（关注或绑定）",
        "复购赠礼",
        "月度会员礼遇",
        "生日礼（按等级）",
        "分群礼遇（流失风险／沉睡）",
        "积分加倍：国庆双倍积分",
        "会员纪念日礼",
    ):
        assert name in page
    assert "会员9.5折券" in page
    assert page.count('name="csrf"') >= 2 * 13  # every form carries the token


async def test_pause_resume_and_change_amounts_are_stored_and_audited(
    app_factory: Callable[..., Any],
) -> None:
    client = await _marketer(app_factory)
    token = await csrf_of(client, PAGE)
    paused = await client.post(f"{PAGE}/welcome/pause", data={"csrf": token}, allow_redirects=False)
    assert paused.status == 303
    assert not (await _config(client)).welcome.enabled
    page = await (await client.get(PAGE)).text()
    assert re.search(r'id="rule-welcome".*?已暂停', page, re.S)
    changed = await client.post(
        f"{PAGE}/monthly_tier",
        data={
            "csrf": token,
            "gift.silver.coupon": "cash_10",
            "gift.gold.points": "300",
            "monthly_budget": "5000",
        },
        allow_redirects=False,
    )
    assert changed.status == 303
    config = await _config(client)
    assert config.monthly_tier.by_tier["silver"].coupon == "cash_10"
    assert config.monthly_tier.by_tier["gold"].points == 300
    assert config.monthly_tier.monthly_budget == 5000
    assert not config.welcome.enabled  # the other override stays
    resumed = await client.post(
        f"{PAGE}/welcome/resume", data={"csrf": token}, allow_redirects=False
    )
    assert resumed.status == 303
    assert (await _config(client)).welcome.enabled
    audits = [(a.action, a.target) for a in await _audits(client)]
    assert audits.count(("benefit_rule_changed", "welcome")) == 2
    assert ("benefit_rule_changed", "monthly_tier") in audits
    (entry,) = [a for a in await _audits(client) if a.target == "monthly_tier"]
    assert entry.detail["changes"]["monthly_budget"] == 5000
    assert entry.detail["before"]["monthly_budget"] == 0


async def test_a_bad_change_says_why_and_changes_nothing(app_factory: Callable[..., Any]) -> None:
    client = await _marketer(app_factory)
    token = await csrf_of(client, PAGE)
    for data in (
        {"gift..points": "-5"},
        {"gift..points": "lots"},
        {"gift..coupon": "no_such_kind"},
    ):
        response = await client.post(f"{PAGE}/anniversary", data={"csrf": token} | data)
        assert response.status == 400
        assert "无法保存“会员纪念日礼”" in await response.text()
    assert (await client.post(f"{PAGE}/nope/pause", data={"csrf": token})).status == 404
    assert (await _config(client)).anniversary.points == 200
    assert [a for a in await _audits(client) if a.action == "benefit_rule_changed"] == []


async def test_changes_need_the_csrf_token(app_factory: Callable[..., Any]) -> None:
    client = await _marketer(app_factory)
    for data in ({}, {"csrf": "forged"}):
        response = await client.post(f"{PAGE}/welcome/pause", data=data)
        assert response.status == 403
    assert (await _config(client)).welcome.enabled


async def test_a_spent_budget_is_shown(app_factory: Callable[..., Any]) -> None:
    client = await _marketer(app_factory)
    token = await csrf_of(client, PAGE)
    await client.post(f"{PAGE}/welcome", data={"csrf": token, "monthly_budget": "1"})
    page = await (await client.get(PAGE)).text()
    assert "本月预算已用完" not in page
    await push(client, PLAIN, PLAIN.event("o_console_new01", "subscribe"))
    await push(client, PLAIN, PLAIN.event("o_console_new02", "subscribe"))
    page = await (await client.get(PAGE)).text()
    row = re.search(r'id="rule-welcome".*?</tr>', page, re.S)
    assert row is not None
    assert "1 张券（1 人）" in row[0]
    assert "本月预算已用完，停止发放" in row[0]
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(Member.id).where(Member.openid == "o_console_new02"))
