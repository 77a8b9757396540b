"""The template page and the dashboard's block in a real browser: a marketer finds 模板消息 in
the menu, reads that nothing is configured and what to apply for, and sees the notice skipped
this month counted on the dashboard."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect

from bot import wiring
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import PASSWORD, add_staff
from tests.bot.console.test_template_views import MEMBER, _coupon_reminder
from tests.bot.push.test_delivery import eventually, finished


async def test_a_marketer_sees_what_templates_are_missing(
    client: TestClient, page: Page, tmp_path: Path
) -> None:
    await follower(client, MEMBER)
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")
    await _coupon_reminder(client)
    (row,) = await eventually(lambda: finished(client))
    assert row.reason == "no_channel"
    await add_staff(client, "marketer_zhao", "marketer")
    base = str(client.make_url("/console/")).rstrip("/")

    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", "marketer_zhao")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.get_by_role("link", name="模板消息").click()
    await expect(page.locator("h1")).to_have_text("模板消息")
    await expect(page.locator("#no-templates")).to_contain_text("尚未配置任何模板消息")
    coupon = page.locator('#template-table tr[data-purpose="coupon_expiring"]')
    await expect(coupon).to_contain_text("优惠券到期提醒")
    await expect(coupon.locator(".state")).to_have_text("未配置")
    await expect(coupon.locator(".skipped")).to_have_text("1")
    await expect(page.locator("#skipped-total")).to_have_text("1")
    await page.screenshot(path=str(tmp_path / "templates.png"), full_page=True)

    await page.get_by_role("link", name="数据看板").click()
    block = page.locator("#no-template")
    await expect(block).to_contain_text("本月因未配置模板而跳过的通知：1 条")
    await expect(block.locator('tr[data-purpose="coupon_expiring"] .skipped')).to_have_text("1")
    await block.screenshot(path=str(tmp_path / "dashboard-block.png"))
    await block.get_by_role("link").click()
    await expect(page.locator("h1")).to_have_text("模板消息")
