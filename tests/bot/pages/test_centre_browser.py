"""The member centre in Chromium on a phone (390×844), signing in through WeChat's web
authorisation played by the stand-in: every page, the member code rotating in place, and the
old code refused at the till."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis

from messages import catalogue_page_copy as catalogue_copy
from messages import centre_copy as copy
from tests.bot.api.test_api import call
from tests.bot.pages.centre_helpers import Centre, add_item, member_with_history, start_centre
from tests.browser import ACTION_TIMEOUT_MS, LOCALE
from tests.wechat_standin import WeChatStandIn

PHONE = {"width": 390, "height": 844}
PAGES = ("/m/", "/m/code", "/m/coupons", "/m/rewards", "/m/points", "/m/orders", "/m/profile")
# An item's picture, as the brand's own image host would serve it.
BAG_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
    '<rect width="96" height="96" rx="12" fill="#f3e7c4"/>'
    '<path d="M24 36h48l-4 40H28z" fill="#c9a227"/>'
    '<path d="M36 36v-6a12 12 0 0 1 24 0v6" fill="none" stroke="#5a4a1f" stroke-width="4"/>'
    "</svg>"
)
# Screenshots to look at (kept out of the repository).
SHOTS = Path("/tmp/centre-shots")


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    """A page in a phone-sized context, closed after the test."""
    context = await browser.new_context(
        locale=LOCALE, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _centre(
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    standin: WeChatStandIn,
    **settings: Any,
) -> Centre:
    centre = await start_centre(
        aiohttp_server, aiohttp_client, db_url, redis_url, standin, **settings
    )
    await member_with_history(centre.client, "o_phone_alice01", "王小明", orders=4)
    centre.standin.browser_openid = "o_phone_alice01"
    return centre


def _image_host() -> web.Application:
    app = web.Application()

    async def bag(request: web.Request) -> web.Response:
        return web.Response(text=BAG_SVG, content_type="image/svg+xml")

    app.router.add_get("/bag.svg", bag)
    return app


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_every_page_on_a_phone_through_the_oauth_dance(
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,
    standin: WeChatStandIn,
    phone: Page,
) -> None:
    centre = await _centre(aiohttp_server, aiohttp_client, db_url, redis_url, standin)
    images = await aiohttp_server(_image_host())
    picture = str(images.make_url("/bag.svg"))
    await add_item(centre, name="无门槛10元券", kind="coupon", coupon_kind="cash_10", delivery=None)
    await add_item(centre, name="联名帆布袋", cash_fen=990, stock=3, image_url=picture)
    await add_item(centre, name="品牌保温杯", points_price=99_000, image_url=picture)
    # From the menu: the centre, WeChat's silent authorisation, back to the card.
    await phone.goto(f"{centre.url}/m/")
    # (The #wechat_redirect fragment rides along the redirects, as browsers keep fragments.)
    await expect(phone).to_have_url(re.compile(rf"^{re.escape(centre.url)}/m/(#.*)?$"))
    await expect(phone.get_by_text("王小明，您好")).to_be_visible()
    await expect(phone.locator(".tier")).to_have_text("银卡会员")
    await expect(phone.get_by_role("heading", name=copy.KEEP_HEADING)).to_be_visible()
    await _shot(phone, "card")
    await phone.get_by_role("link", name=copy.NAV_CODE).click()
    await expect(phone.locator("#digits")).to_have_text(re.compile(r"^98\d\d( \d{4}){3} \d\d$"))
    await expect(phone.locator("#barcode svg")).to_be_visible()
    await _shot(phone, "code")
    await phone.get_by_role("link", name=copy.NAV_COUPONS).click()
    await expect(phone.get_by_text("满300元减50元")).to_be_visible()
    await _shot(phone, "coupons")
    await phone.get_by_role("link", name=copy.COUPON_SHOW).first.click()
    await expect(phone.locator(".qr svg")).to_be_visible()
    await _shot(phone, "coupon")
    # The catalogue: what the member can redeem, a confirmation, the pickup code.
    await phone.get_by_role("link", name=catalogue_copy.NAV_REWARDS).click()
    await expect(phone.get_by_role("heading", name=catalogue_copy.CAN_REDEEM)).to_be_visible()
    await expect(phone.get_by_text("仅剩 3 件")).to_be_visible()
    await expect(
        phone.get_by_text(catalogue_copy.SHORT.format(shortfall=99_000 - 400))
    ).to_be_visible()
    await expect(phone.locator("img.pic").first).to_have_js_property("naturalWidth", 96)
    await _shot(phone, "rewards")
    await phone.get_by_role("link", name="联名帆布袋").click()
    await expect(phone.get_by_role("heading", name="联名帆布袋")).to_be_visible()
    await expect(phone.get_by_text("100 积分 + ¥9.9")).to_be_visible()
    await _shot(phone, "reward-confirm")
    await phone.get_by_role("button", name=catalogue_copy.CONFIRM_SUBMIT).click()
    await expect(phone.get_by_role("status")).to_have_text(catalogue_copy.DONE_HEADING)
    await expect(phone.locator("#pickup")).to_have_text(re.compile(r"^[A-Z0-9]{10}$"))
    await expect(phone.locator(".barcode svg")).to_be_visible()
    await _shot(phone, "reward-done")
    await phone.get_by_role("link", name=copy.NAV_POINTS).click()
    await expect(phone.locator(".row")).to_have_count(5)  # 4 orders and the redemption
    await _shot(phone, "points")
    await phone.get_by_role("link", name=copy.NAV_ORDERS).click()
    await expect(phone.locator(".row")).to_have_count(4)
    await _shot(phone, "orders")
    await phone.get_by_role("link", name=copy.NAV_PROFILE).click()
    await phone.locator("select[name=month]").select_option("3")
    await phone.locator("select[name=day]").select_option("5")
    await _shot(phone, "profile")
    await phone.get_by_role("button", name=copy.BIRTHDAY_SUBMIT).click()
    await expect(phone.get_by_text("您的生日是 3 月 5 日")).to_be_visible()
    await phone.get_by_role("button", name=copy.BIRTHDAY_CONFIRM_YES).click()
    await expect(phone.get_by_role("status")).to_have_text(copy.DONE_BIRTHDAY)
    await expect(phone.get_by_text("3月5日", exact=True)).to_be_visible()
    await phone.get_by_role("button", name=copy.MARKETING_STOP).click()
    await expect(phone.locator("#marketing")).to_have_text(copy.MARKETING_OFF)
    await _shot(phone, "profile-done")
    # Nothing came from another host, and no page grew past 100 KB.
    for path in PAGES:
        response = await phone.request.get(f"{centre.url}{path}")
        assert response.status == 200
        assert len(await response.body()) < 100_000


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_member_code_rotates_and_the_old_one_is_refused(
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,
    standin: WeChatStandIn,
    phone: Page,
) -> None:
    # A short minute, and no grace: once the page shows the next code, the old one is dead.
    centre = await _centre(
        aiohttp_server,
        aiohttp_client,
        db_url,
        redis_url,
        standin,
        code_seconds=3,
        code_grace_seconds=0,
    )
    await phone.goto(f"{centre.url}/m/code")
    box = phone.locator("#membercode")
    first = await box.get_attribute("data-code")
    assert first is not None
    # The page fetches the next code itself, without a reload.
    await expect(box).not_to_have_attribute("data-code", first)
    second = await box.get_attribute("data-code")
    assert second is not None
    await expect(phone.locator("#digits")).to_have_text(re.compile(second[-2:] + "$"))
    status, body = await call(centre.client, "POST", "/member-codes/resolve", {"code": first})
    assert (status, body["error"]["code"]) == (410, "member_code_expired")
