"""The console in a real browser (headless Chromium): an agent logs in, sees a member's request
appear live, claims it, replies, sees the member's answer arrive, closes it (the rating question
goes out), and hands another conversation back to the bot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import update

from bot import wiring
from bot.wechat.handoff import Handoffs
from models.base import utcnow
from models.conversations import Conversation
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import (
    NO_QUIET_HOURS,
    PASSWORD,
    _async,
    add_staff,
    conversation_of,
)
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn

ANNA, BEN = "o_cs_browser_anna", "o_cs_browser_ben1"


async def test_an_agent_works_a_conversation_in_the_browser(
    app_factory: Callable[..., Any], standin: WeChatStandIn, page: Page
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    await add_staff(client, "agent_li", "agent")
    base = str(client.make_url("/console/")).rstrip("/")

    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", "agent_li")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("会话队列")
    await expect(page.locator("#queue")).to_contain_text("暂无等待中的会话")

    # A member asks for a person: the queue shows it without a reload.
    await follower(client, ANNA)
    await push(client, PLAIN, PLAIN.text(ANNA, "人工"))
    row = page.locator("#queue tr[data-conversation]")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("主动要求")
    await expect(row).not_to_have_class("overdue")
    conversation = await conversation_of(client, ANNA)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id)
            .values(queued_at=utcnow() - timedelta(hours=2))
        )
    # Two hours pass in the database: the next queue event (the sweep's) refreshes the page.
    await Handoffs(client.app[wiring.REDIS]).publish("requeued", conversation.id)
    await expect(row).to_have_class("overdue")
    await push(client, PLAIN, PLAIN.text(ANNA, "有人吗"))

    await row.get_by_role("button", name="接入").click()
    await expect(page.locator("#status")).to_contain_text("接待中")
    await expect(page.locator("#messages")).to_contain_text("有人吗")
    await expect(page.locator("#window")).to_contain_text("还可回复")

    await page.locator("[data-canned]").first.click()
    await expect(page.locator("#reply-text")).to_have_value(
        "您好，我是客服，很高兴为您服务，请问有什么可以帮您？"
    )
    await page.fill("#reply-text", "您好，我来帮您查一下")
    await page.click("#send")
    await expect(page.locator("#messages")).to_contain_text("您好，我来帮您查一下")
    assert any(m.get("text", {}).get("content") == "您好，我来帮您查一下" for m in standin.sent())

    # The member's answer arrives live, as text even when it looks like markup.
    await push(client, PLAIN, PLAIN.text(ANNA, "订单 A-1 没收到 <b>急</b>"))
    await expect(page.locator("#messages")).to_contain_text("订单 A-1 没收到 <b>急</b>")
    assert await page.locator("#messages b").count() == 0

    await page.click("#close")
    await expect(page.locator("h1")).to_have_text("会话队列")
    await eventually(
        lambda: _async([m for m in standin.sent() if "满意吗" in str(m.get("text", ""))])
    )

    # Another member; this time the agent hands the conversation back to the bot.
    await follower(client, BEN)
    await push(client, PLAIN, PLAIN.text(BEN, "客服"))
    row = page.locator("#queue tr[data-conversation]")
    await expect(row).to_have_count(1)
    await row.get_by_role("button", name="接入").click()
    await page.click("#handback")
    await expect(page.locator("h1")).to_have_text("会话队列")
    ended = await conversation_of(client, BEN)
    assert (ended.status, ended.outcome) == ("returned", "handed_back")
    await eventually(
        lambda: _async(
            [m for m in standin.sent() if m["touser"] == BEN and "人工服务已结束" in str(m)]
        )
    )
    answer = await push(client, PLAIN, PLAIN.text(BEN, "积分"))
    assert answer.reply is not None  # the bot answers Ben again


async def test_a_wrong_password_is_refused_in_the_browser(
    app_factory: Callable[..., Any], page: Page
) -> None:
    client = await app_factory()
    await add_staff(client, "agent_li", "agent")
    await page.goto(str(client.make_url("/console/login")))
    await page.fill("input[name=username]", "agent_li")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_have_text("用户名或密码错误。")
    await page.goto(str(client.make_url("/console/")))
    await expect(page).to_have_url(str(client.make_url("/console/login")))
