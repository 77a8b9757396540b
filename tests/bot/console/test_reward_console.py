"""The points catalogue in the console: a marketer adds, changes and retires items (audited,
CSRF-guarded, a bad field re-shown naming it and nothing written), sees stock and
redemptions; the fulfilment list; and the pages as a browser shows them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect
from sqlalchemy import func, select

from bot import wiring
from models.base import utcnow
from models.members import Member
from models.redemption import redeem
from models.rewards import RewardItem
from models.staff import AuditEntry
from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import PASSWORD, add_staff, csrf_of, login

# Where the screenshots go, to look at (tests/browser.py).
SHOTS = Path(tempfile.gettempdir())
BAG = {
    "name": "联名帆布袋",
    "kind": "gift",
    "delivery": "pickup",
    "points_price": "800",
    "cash_yuan": "19.9",
    "stock": "20",
    "limit_count": "1",
    "limit_period": "month",
}


async def _items(client: TestClient) -> list[RewardItem]:
    async with client.app[wiring.SESSIONS]() as session:
        return list((await session.scalars(select(RewardItem).order_by(RewardItem.id))).all())


async def _audit(client: TestClient) -> list[tuple[str, str | None]]:
    async with client.app[wiring.SESSIONS]() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.target)
            .where(AuditEntry.action.like("reward_%"))
            .order_by(AuditEntry.id)
        )
        return [tuple(row) for row in rows]


async def test_a_marketer_adds_changes_and_retires_an_item(client: TestClient) -> None:
    await add_staff(client, "mkt_wang", "marketer")
    assert await login(client, "mkt_wang") == 303
    token = await csrf_of(client, "/console/rewards/new")
    forged = await client.post("/console/rewards", data=BAG | {"csrf": "forged"})
    assert forged.status == 403
    made = await client.post("/console/rewards", data=BAG | {"csrf": token}, allow_redirects=False)
    assert made.status == 303
    [item] = await _items(client)
    assert (item.points_price, item.cash_fen, item.stock, item.limit_period) == (
        800,
        1990,
        20,
        "month",
    )
    page = await (await client.get("/console/rewards")).text()
    assert "联名帆布袋" in page
    assert "800 积分 + ¥19.9" in page

    changed = BAG | {"csrf": token, "points_price": "600", "tiers": "gold"}
    response = await client.post(f"/console/rewards/{item.id}", data=changed, allow_redirects=False)
    assert response.status == 303
    [item] = await _items(client)
    assert (item.points_price, item.tiers) == (600, ["gold"])

    retired = await client.post(
        f"/console/rewards/{item.id}/retire", data={"csrf": token}, allow_redirects=False
    )
    assert retired.status == 303
    assert (await _items(client))[0].status == "retired"
    target = str(item.id)
    assert await _audit(client) == [
        ("reward_create", target),
        ("reward_update", target),
        ("reward_retire", target),
    ]


async def test_a_bad_field_is_named_and_nothing_is_written(client: TestClient) -> None:
    await add_staff(client, "mkt_li", "marketer")
    await login(client, "mkt_li")
    token = await csrf_of(client, "/console/rewards/new")
    for bad, field in (
        ({"points_price": "abc"}, "points_price"),
        ({"kind": "coupon", "delivery": ""}, "coupon_kind"),
        ({"delivery": ""}, "delivery"),
        ({"image_url": "javascript:alert(1)"}, "image_url"),
    ):
        response = await client.post("/console/rewards", data=BAG | bad | {"csrf": token})
        assert response.status == 400
        assert f'data-field="{field}"' in await response.text()
    assert await _items(client) == []
    assert await _audit(client) == []


async def test_an_agent_reads_fulfilments_but_not_the_catalogue(client: TestClient) -> None:
    await add_staff(client, "agent_zhao", "agent")
    await login(client, "agent_zhao")
    assert (await client.get("/console/rewards", allow_redirects=False)).status == 403
    assert (await client.get("/console/fulfilments")).status == 200


async def _with_redemption(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await call(client, "POST", "/orders", order("CON-1", amount_fen=200_000))
    await call(
        client,
        "POST",
        "/rewards",
        {
            "name": "联名帆布袋",
            "kind": "gift",
            "delivery": "pickup",
            "points_price": 800,
            "cash_fen": 1990,
            "stock": 20,
        },
    )
    await call(
        client,
        "POST",
        "/rewards",
        {
            "name": "新品口红（金卡优先）",
            "kind": "gift",
            "delivery": "ship",
            "points_price": 1500,
            "early_tiers": ["gold", "diamond"],
            "opens_at": "2027-01-10T00:00:00+08:00",
        },
    )
    await call(
        client,
        "POST",
        "/rewards",
        {
            "name": "满300减50券",
            "kind": "coupon",
            "coupon_kind": "full_300_50",
            "points_price": 500,
            "limit_count": 1,
            "limit_period": "month",
        },
    )
    async with client.app[wiring.SESSIONS].begin() as session:
        member_id = await session.scalar(select(func.min(Member.id)))
        item_id = await session.scalar(select(func.min(RewardItem.id)))
        rules = client.app[wiring.CONFIG].programme
        await redeem(session, rules, member_id, item_id, key="shot", now=utcnow())


async def test_the_pages_in_a_browser(app_factory: Callable[..., Any], page: Page) -> None:
    client = await app_factory()
    await _with_redemption(client)
    await add_staff(client, "mkt_zhou", "marketer")
    base = str(client.make_url("/console/")).rstrip("/")
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", "mkt_zhou")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.goto(f"{base}/rewards")
    rows = page.locator("#rewards tr[data-reward]")
    await expect(rows).to_have_count(3)
    await expect(rows.first.locator(".redeemed")).to_have_text("0")
    bag = page.locator("#rewards tr[data-reward]", has_text="联名帆布袋")
    await expect(bag.locator(".stock")).to_have_text("19")
    await expect(bag.locator(".redeemed")).to_have_text("1")
    await page.screenshot(path=str(SHOTS / "rewards.png"), full_page=True)

    await page.click("#new-reward")
    await page.fill("input[name=name]", "咖啡体验课名额")
    await page.select_option("select[name=kind]", "experience")
    await page.fill("input[name=points_price]", "abc")
    await page.click("#reward-form button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("兑换积分")
    await page.screenshot(path=str(SHOTS / "reward_form_error.png"), full_page=True)
    await page.fill("input[name=points_price]", "3000")
    await page.fill("input[name=stock]", "12")
    await page.click("#reward-form button[type=submit]")
    await expect(page.locator("#message")).to_have_text("已新增商品。")
    await expect(page.locator("#rewards tr[data-reward]")).to_have_count(4)

    await page.goto(f"{base}/fulfilments")
    await expect(page.locator("#fulfilments tr[data-status=pending]")).to_have_count(1)
    await page.screenshot(path=str(SHOTS / "fulfilments.png"), full_page=True)
