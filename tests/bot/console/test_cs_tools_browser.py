"""Customer service's tools in a real browser (headless Chromium): a follow-up worked to an
outcome, a compensation coupon that reaches the member's 我的券, a canned reply edited by an
admin and used by an agent. Each page is photographed into the test's tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect
from sqlalchemy import update

from bot import wiring
from models.members import Member
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import NO_QUIET_HOURS, PASSWORD, add_staff
from tests.bot.console.test_cs_tools import PHONE, add_call, add_member
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn

MEMBER = "o_cs_tools_browser1"


async def sign_in(page: Page, client: TestClient, username: str) -> str:
    """Log ``username`` in; the console's base URL."""
    base = str(client.make_url("/console/")).rstrip("/")
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_contain_text(username)
    return base


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_a_follow_up_is_worked_to_an_outcome_in_the_browser(
    app_factory: Callable[..., Any], page: Page, tmp_path: Path
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    call = await add_call(client, await add_member(client), overdue=True)
    await add_staff(client, "agent_li", "agent")
    base = await sign_in(page, client, "agent_li")

    await page.click("text=回访与跟进")
    row = page.locator(f"#follow-ups tr[data-follow-up='{call}']")
    await expect(row).to_have_class("overdue")
    await expect(row).to_contain_text("未分配")
    await shot(page, tmp_path, "follow_ups")
    await row.get_by_role("link", name="处理").click()
    await expect(page.locator("#phone")).to_have_text("138****5678")
    await page.click("#take")
    await expect(page.locator("#assignee")).to_have_text("agent_li")
    await expect(page.locator("#phone")).to_have_text("13812345678")

    await page.check("input[name=connected][value=no]")
    await page.fill("#attempt-form textarea", "无人接听")
    await page.click("#record-attempt")
    await expect(page.locator("#attempts")).to_contain_text("未接通：无人接听")
    await page.check("input[name=connected][value=yes]")
    await page.fill("#attempt-form textarea", "会员最近工作忙，下周来店")
    await page.click("#record-attempt")
    await expect(page.locator("#attempts li")).to_have_count(2)
    await shot(page, tmp_path, "follow_up")
    await page.select_option("#close-form select[name=outcome]", "resolved")
    await page.fill("#close-form textarea", "已邀请到店体验")
    await page.click("#close")
    await expect(page.locator("#status")).to_have_text("已完成：已解决")
    await expect(page.locator("#attempt-form")).to_have_count(0)

    await page.goto(f"{base}/follow-ups?status=closed&mine=1")
    await expect(page.locator(f"tr[data-follow-up='{call}']")).to_contain_text("已解决")
    await expect(page.locator("#rates")).to_contain_text("50.0%")


async def test_a_compensation_coupon_reaches_the_members_coupons_in_the_browser(
    app_factory: Callable[..., Any], page: Page, tmp_path: Path
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    await follower(client, MEMBER)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == MEMBER).values(name="王芳", phone=PHONE)
        )
    before = await push(client, PLAIN, PLAIN.text(MEMBER, "我的券"))
    assert "无门槛10元券" not in str(before.reply)
    await add_staff(client, "agent_li", "agent")
    await sign_in(page, client, "agent_li")

    await page.click("text=会员查询")
    await page.fill("#search input[name=q]", "5678")
    await page.click("#search button")
    await expect(page.locator("#results")).to_contain_text("138****5678")
    await shot(page, tmp_path, "members")
    await page.locator("#results").get_by_role("link", name="查看").click()
    await expect(page.locator("#member-name")).to_have_text("王芳")
    await page.fill("#compensate-coupon input[name=reason]", "物流延误三天")
    # A double click: the same form reaches the server twice; one coupon is issued.
    status = await page.evaluate(
        """async () => {
            const form = document.getElementById("compensate-coupon");
            const body = new URLSearchParams(new FormData(form));
            const sent = await fetch(form.action, {method: "POST", body});
            return sent.status;
        }"""
    )
    assert status == 200
    await page.click("#give-coupon")
    await expect(page.locator("#compensation-done")).to_contain_text("未重复发放")
    await expect(page.locator("#coupons tbody tr")).to_have_count(1)
    await expect(page.locator("#coupons")).to_contain_text("无门槛10元券")
    await shot(page, tmp_path, "member")

    after = await push(client, PLAIN, PLAIN.text(MEMBER, "我的券"))
    assert after.reply is not None
    assert "无门槛10元券" in after.reply["Content"]


async def test_a_canned_reply_is_edited_and_used_in_the_browser(
    app_factory: Callable[..., Any], page: Page, standin: WeChatStandIn, tmp_path: Path
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    await follower(client, MEMBER)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == MEMBER).values(name="王芳", tier="gold")
        )
    await add_staff(client, "boss", "admin")
    await add_staff(client, "agent_li", "agent")
    await sign_in(page, client, "boss")

    await page.click("text=快捷回复")
    first = page.locator("#canned form.canned-edit").first
    await expect(first.locator("textarea")).to_have_value(
        "您好，我是客服，很高兴为您服务，请问有什么可以帮您？"
    )
    await first.locator("textarea").fill("{name}您好，{phone}")
    await first.get_by_role("button", name="保存").click()
    await expect(page.locator("#canned-error")).to_contain_text("不认识的占位符：{phone}")
    first = page.locator("#canned form.canned-edit").first
    await first.locator("textarea").fill("{name}您好，欢迎回来！您是我们的{tier}，很高兴为您服务。")
    await first.get_by_role("button", name="保存").click()
    await expect(page.locator("#canned-error")).to_have_count(0)
    await expect(page.locator("#canned form.canned-edit").first.locator("textarea")).to_have_value(
        "{name}您好，欢迎回来！您是我们的{tier}，很高兴为您服务。"
    )
    await shot(page, tmp_path, "canned")
    await page.click("header button[type=submit]")  # 退出

    await push(client, PLAIN, PLAIN.text(MEMBER, "人工"))
    await sign_in(page, client, "agent_li")
    row = page.locator("#queue tr[data-conversation]")
    await expect(row).to_have_count(1)
    await row.get_by_role("button", name="接入").click()
    await expect(page.locator("#status")).to_contain_text("接待中")
    await page.locator("[data-canned]").first.click()
    rendered = "王芳您好，欢迎回来！您是我们的金卡会员，很高兴为您服务。"
    await expect(page.locator("#reply-text")).to_have_value(rendered)
    await shot(page, tmp_path, "conversation")
    await page.click("#send")
    await expect(page.locator("#messages")).to_contain_text(rendered)
    assert any(m.get("text", {}).get("content") == rendered for m in standin.sent())


async def test_an_admin_adds_an_agent_in_the_browser(
    app_factory: Callable[..., Any], page: Page, tmp_path: Path
) -> None:
    client = await app_factory()
    await add_staff(client, "boss", "admin")
    await sign_in(page, client, "boss")
    await page.click("text=员工账号")
    await page.fill("#staff-add input[name=username]", "agent_new")
    await page.fill("#staff-add input[name=password]", PASSWORD)
    await page.select_option("#staff-add select[name=role]", "agent")
    await page.click("#staff-add button")
    row = page.locator("tr[data-staff='agent_new']")
    await expect(row).to_contain_text("启用")
    await row.locator("button.toggle").click()
    await expect(page.locator("tr[data-staff='agent_new'] .state")).to_have_text("已停用")
    await page.locator("tr[data-staff='boss'] button.toggle").click()
    await expect(page.locator("#staff-error")).to_have_text("至少需要保留一个启用的管理员账号。")
    await shot(page, tmp_path, "staff")
