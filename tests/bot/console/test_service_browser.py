"""Issue 20 in a real browser (headless Chromium): the queue puts the diamond member first with
the badge saying why; a case opened from a conversation is written to after the idle return,
first as a customer-service message (window open), then as the template (window closed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from bot import wiring
from tests.bot.api.test_api import follower
from tests.bot.console.test_cases import MEMBER, TEMPLATE, idle_return
from tests.bot.console.test_console import NO_QUIET_HOURS, PASSWORD, _async, add_staff
from tests.bot.console.test_service_priority import member_of_tier
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn

# Set to a folder to keep the pages' screenshots (to look at them).
SHOTS = os.environ.get("BOT_TEST_SCREENSHOTS")


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("会话队列")


async def test_the_queue_serves_the_diamond_member_first(
    app_factory: Callable[..., Any], page: Page
) -> None:
    client = await app_factory(console={"assignment": "claim", "priority_tiers": ["diamond"]})
    await add_staff(client, "agent_li", "agent")
    base = str(client.make_url("/console/")).rstrip("/")
    await member_of_tier(client, "o_br_basic000001", "basic")
    await member_of_tier(client, "o_br_diamond0001", "diamond")
    await sign_in(page, base, "agent_li")
    await push(client, PLAIN, PLAIN.text("o_br_basic000001", "人工"))
    rows = page.locator("#queue tr[data-conversation]")
    await expect(rows).to_have_count(1)
    await push(client, PLAIN, PLAIN.text("o_br_diamond0001", "人工"))
    await expect(rows).to_have_count(2)
    # The diamond member asked later and is first, with the reason shown.
    await expect(rows.nth(0)).to_contain_text("钻石会员优先")
    await expect(rows.nth(1)).to_contain_text("普通会员")
    await expect(rows.nth(1).locator(".badge")).to_have_count(0)
    await shot(page, "queue_priority")


async def test_a_case_is_written_to_after_the_idle_return(
    app_factory: Callable[..., Any], standin: WeChatStandIn, page: Page
) -> None:
    client = await app_factory(
        console={"assignment": "claim"},
        delivery={"templates": {"service_reply": TEMPLATE}, **NO_QUIET_HOURS},
    )
    await add_staff(client, "agent_li", "agent")
    base = str(client.make_url("/console/")).rstrip("/")
    await follower(client, MEMBER)
    await sign_in(page, base, "agent_li")
    await push(client, PLAIN, PLAIN.text(MEMBER, "人工"))
    await push(client, PLAIN, PLAIN.text(MEMBER, "退货申请一直没人处理"))
    row = page.locator("#queue tr[data-conversation]")
    await row.get_by_role("button", name="接入").click()
    await page.fill("#reply-text", "我来为您登记，24小时内答复")
    await page.click("#send")
    await expect(page.locator("#messages")).to_contain_text("24小时内答复")
    await page.select_option("#case-category", "returns")
    await page.fill("#case-open textarea[name=notes]", "会员要求退货，答应24小时内答复")
    await page.click("#case-create")
    await expect(page.locator("h1")).to_contain_text("退换货")
    href = await page.locator("dd a[href^='/console/conversations/']").get_attribute("href")
    assert href is not None
    conversation_id = int(href.rsplit("/", 1)[1])

    await idle_return(client, conversation_id)
    await page.reload()
    await expect(page.locator("#case-window")).to_contain_text("还可发送")
    await page.fill("#case-text", "退货已受理，快递员明天上门取件")
    await page.click("#case-send")
    await expect(page.locator("#case-entries")).to_contain_text("快递员明天上门取件")
    assert {
        "touser": MEMBER,
        "msgtype": "text",
        "text": {"content": "退货已受理，快递员明天上门取件"},
    } in standin.sent()

    # Two days later the window has closed: the same form sends the template message.
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")
    await page.reload()
    await expect(page.locator("#case-window")).to_contain_text("模板消息")
    await page.fill("#case-text", "退款已原路退回，请查收")
    await page.click("#case-send")
    await expect(page.locator("#case-entries")).to_contain_text("模板消息")
    (sent,) = await eventually(lambda: _async(standin.sent("/cgi-bin/message/template/send")))
    assert sent["data"]["keyword1"] == {"value": "退款已原路退回，请查收"}
    await shot(page, "case_page")

    await page.fill("#case-outcome-text", "已退款")
    await page.click("#case-close button")
    await expect(page.locator("#case-status")).to_contain_text("已结案")
    await page.goto(f"{base}/cases?state=all")
    await expect(page.locator("tr[data-case]")).to_have_count(1)
    await shot(page, "case_list")
    await page.goto(f"{base}/reports/service")
    await expect(page.locator("#service-agents")).to_contain_text("agent_li")
    await shot(page, "service_report")
