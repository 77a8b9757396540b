"""A campaign in a real browser: a marketer builds an audience and sees it counted, drafts and
submits; an admin approves; it runs against the WeChat stand-in; the page shows what was sent,
skipped and converted. Then the dashboard draws its charts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select

from bot import wiring
from models.members import Member
from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import NO_QUIET_HOURS, PASSWORD, add_staff
from tests.bot.push.test_delivery import eventually
from tests.scheduler.test_campaigns import _run, settled

VIPS = [f"o_camp_vip_{n:05d}" for n in range(4)]
OTHERS = [f"o_camp_std_{n:05d}" for n in range(3)]


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")


async def test_a_campaign_from_audience_to_figures_in_the_browser(
    app_factory: Callable[..., Any], page: Page
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "marketing_per_day": 1})
    for openid in VIPS + OTHERS:
        await follower(client, openid)
        tags = ["vip"] if openid in VIPS else []
        await call(client, "PUT", f"/members/{openid}", {"tags": tags})
    # One VIP had today's marketing push already: the daily cap skips this one.
    async with client.app[wiring.SESSIONS]() as session:
        capped = await session.scalar(select(Member.id).where(Member.openid == VIPS[-1]))
    today = datetime.now(UTC).astimezone(client.app[wiring.CONFIG].programme.zone)
    await client.app[wiring.REDIS].set(f"cap:day:{capped}:{today:%Y%m%d}", 1)
    await add_staff(client, "mia", "marketer")
    await add_staff(client, "boss", "admin")
    base = str(client.make_url("/console/")).rstrip("/")

    await sign_in(page, base, "mia")
    await expect(page.locator("h1")).to_have_text("满意度（近90天）")
    await page.goto(f"{base}/campaigns/new")
    await expect(page.locator("#audience-count")).to_have_text(str(len(VIPS + OTHERS)))
    await page.fill("input[name=tags]", "vip")
    await expect(page.locator("#audience-count")).to_have_text(str(len(VIPS)))
    await expect(page.locator("#audience-allowance")).to_have_text(str(len(VIPS)))
    await page.fill("input[name=name]", "VIP 专享日")
    await page.fill("textarea[name=text_a]", "VIP 专享：本周全场 9 折！")
    await page.fill("input[name=holdout_percent]", "0")
    await page.click("#save-draft")
    await expect(page.locator("#campaign-status")).to_have_text("草稿")
    await expect(page.locator("#action-approve")).to_have_count(0)  # not by its author
    await page.click("#action-submit")
    await expect(page.locator("#campaign-status")).to_have_text("待审批")
    campaign_url = page.url

    await page.click("text=退出")
    await sign_in(page, base, "boss")
    await page.goto(campaign_url)
    await page.click("#action-approve")
    await expect(page.locator("#campaign-status")).to_have_text("已批准")

    assert await _run(client) == 1

    await eventually(lambda: settled(client))
    paid = datetime.now(UTC).isoformat()
    await call(client, "POST", "/orders", order("VIP-1", VIPS[0], 30_000, paid_at=paid))

    await page.goto(campaign_url)
    row = page.locator("#campaign-stats tr[data-variant=A]")
    cells = row.locator("td")
    await expect(cells.nth(1)).to_have_text(str(len(VIPS)))  # targeted
    await expect(cells.nth(2)).to_have_text(str(len(VIPS) - 1))  # sent in the window
    await expect(cells.nth(4)).to_contain_text("frequency_cap×1")  # skipped, with the reason
    await expect(cells.nth(5)).to_have_text("1")  # converted
    await expect(cells.nth(7)).to_have_text("¥300.00")

    await page.goto(f"{base}/dashboard")
    await expect(page.locator("svg")).not_to_have_count(0)
    await expect(page.locator("body")).to_contain_text("复购率")
    # The pushes by purpose, named in Chinese (the campaign's are 营销活动).
    await expect(page.locator("table", has_text="已发送").last).to_contain_text("营销活动")
