"""A campaign in a real browser: a marketer builds an audience and sees it counted, drafts and
submits; an admin approves; it runs against the WeChat stand-in; the page shows what was sent,
skipped and converted. Then the dashboard draws its charts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import func, select

from bot import wiring
from models.campaigns import Campaign
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
    await expect(cells.nth(4)).to_contain_text("频次上限×1")  # skipped, with the reason in words
    await expect(cells.nth(5)).to_have_text("1")  # converted
    await expect(cells.nth(7)).to_have_text("¥300.00")

    await page.goto(f"{base}/dashboard")
    await expect(page.locator("svg")).not_to_have_count(0)
    await expect(page.locator("body")).to_contain_text("复购率")
    # The pushes by purpose, named in Chinese (the campaign's are 营销活动).
    await expect(page.locator("table", has_text="已发送").last).to_contain_text("营销活动")


async def test_a_recurring_weekly_campaign_with_a_coupon_to_buyers_of_a_category(
    app_factory: Callable[..., Any], page: Page, tmp_path: Any
) -> None:
    """A marketer picks 「近6个月买过彩妆」, sees it counted, gives a 满300减50 coupon, and
    sets 每周三 10:00 with the picker (a bad pick first: a clear error, nothing saved)."""
    client = await app_factory()
    recent = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    buyers = [f"o_makeup_{n:05d}" for n in range(3)]
    for n, openid in enumerate([*buyers, *OTHERS]):
        await follower(client, openid)
        category = "彩妆" if openid in buyers else "护肤"
        await call(
            client,
            "POST",
            "/orders",
            order(f"MK-{n}", openid, 20_000, paid_at=recent, category=category),
        )
    await add_staff(client, "mia", "marketer")
    base = str(client.make_url("/console/")).rstrip("/")

    await sign_in(page, base, "mia")
    await page.goto(f"{base}/campaigns/new")
    await expect(page.locator("#audience-count")).to_have_text(str(len(buyers + OTHERS)))
    await page.fill("input[name=bought_category]", "彩妆")
    await expect(page.locator("#audience-count")).to_have_text(str(len(buyers)))
    await page.fill("input[name=name]", "彩妆周三会员日")
    await page.fill("textarea[name=text_a]", "彩妆会员日：本周三全场满300减50！")
    await page.fill("input[name=holdout_percent]", "10")
    await page.check("input[name=reward][value=coupon]")
    await page.select_option("select[name=reward_coupon]", "full_300_50")
    await page.check("input[name=schedule][value=cron]")
    await page.check("input[name=repeat][value=weekly]")
    await page.select_option("select[name=repeat_weekday]", "3")
    await page.fill("input[name=repeat_time]", "")  # a bad pick: no time
    await page.click("#save-draft")
    await expect(page.locator("p.error")).to_have_text("请选择发送时刻（如 10:00）。")
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 0
    # The form keeps what was picked; the time is given and it is saved.
    await expect(page.locator("input[name=bought_category]")).to_have_value("彩妆")
    await expect(page.locator("select[name=repeat_weekday]")).to_have_value("3")
    await page.fill("input[name=repeat_time]", "10:00")
    await page.screenshot(path=str(tmp_path / "campaign-new.png"), full_page=True)
    await page.click("#save-draft")
    await expect(page.locator("#campaign-status")).to_have_text("草稿")
    await expect(page.locator("#campaign-repeat")).to_have_text("每周三 10:00")
    await expect(page.locator("#campaign-reward")).to_have_text("满300减50（30天有效）")
    await expect(page.locator("#campaign-audience")).to_have_text("近6个月买过彩妆")
    await page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)
    async with client.app[wiring.SESSIONS]() as session:
        campaign = await session.scalar(select(Campaign))
    assert campaign is not None
    assert (campaign.schedule, campaign.cron) == ("cron", "0 10 * * 3")
    assert campaign.reward == {"coupon": "full_300_50", "name": "满300减50", "valid_days": 30}
    assert campaign.audience["root"]["all"] == [
        {"field": "bought_category", "op": "in", "value": ["彩妆"], "months": 6}
    ]
    await page.goto(f"{base}/campaigns")
    await expect(page.locator("table")).to_contain_text("每周三 10:00")
    if shots := os.environ.get("BOT_SCREENSHOTS"):
        for name in ("campaign-new.png", "campaign.png"):
            shutil.copy(tmp_path / name, os.path.join(shots, name))
