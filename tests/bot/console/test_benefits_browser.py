"""The 礼遇规则 page in a real browser (headless Chromium): a marketer pauses a rule and
changes another's amounts; a screenshot is kept for a person to look at."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page, expect

from tests.bot.console.test_console import PASSWORD, add_staff

SHOT = os.environ.get("BENEFITS_SCREENSHOT", "")


async def test_a_marketer_pauses_and_changes_rules_in_the_browser(
    app_factory: Callable[..., Any], page: Page
) -> None:
    client = await app_factory(programme={"benefits": {}})
    await add_staff(client, "mkt_sun", "marketer")
    base = str(client.make_url("/console/")).rstrip("/")
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", "mkt_sun")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.click("nav >> text=礼遇规则")
    await expect(page.locator("h1")).to_have_text("礼遇规则")

    welcome = page.locator("#rule-welcome")
    await expect(welcome).to_contain_text("启用")
    await welcome.locator("button", has_text="暂停").click()
    await expect(page.locator("#message")).to_contain_text("已保存“新人礼（关注或绑定）”的设置")
    await expect(page.locator("#rule-welcome")).to_contain_text("已暂停")

    anniversary = page.locator("#rule-anniversary")
    await anniversary.locator("summary").click()
    await anniversary.locator('input[name="gift..points"]').fill("300")
    await anniversary.locator("button", has_text="保存").click()
    await expect(page.locator("#rule-anniversary")).to_contain_text("300 积分")
    if SHOT:
        await page.locator("#rule-segment_entered summary").click()
        await page.screenshot(path=SHOT, full_page=True)
