"""The member centre over HTTP: WeChat's web authorisation against the stand-in, each page
for the signed-in member, and nothing of anyone else by changing a URL or a form."""

from __future__ import annotations

import re
import time

from aiohttp.test_utils import make_mocked_request
from barcode import Code128
from sqlalchemy import select

from bot import wiring
from bot.config import ServerConfig
from bot.pages.codes import QUIET_MODULES, barcode_svg, qr_svg
from bot.pages.session import LOGIN_COOKIE, SESSION_COOKIE, CentreAuth, sign
from messages import catalogue_page_copy as catalogue_copy
from messages import centre_copy as copy
from models.base import utcnow
from models.coupons import Coupon
from models.ledger import LedgerEntry
from models.members import Member
from models.orders import Order
from models.redemption import redeem
from models.rewards import Redeemed, Redemption, RewardSpec, new_item
from tests.bot.api.test_api import follower
from tests.bot.pages.centre_helpers import (
    PAGE_LIMIT_BYTES,
    Centre,
    authorize,
    local,
    member_with_history,
    sign_in,
)

PAGES = ("/m/", "/m/code", "/m/coupons", "/m/rewards", "/m/points", "/m/orders", "/m/profile")


async def _text(centre: Centre, path: str, status: int = 200) -> str:
    response = await centre.client.get(path, allow_redirects=False)
    body = await response.text()
    assert response.status == status, (path, response.status, body[:500])
    return body


async def _member(centre: Centre, openid: str) -> Member:
    async with centre.client.app[wiring.SESSIONS]() as session:
        member = await session.scalar(select(Member).where(Member.openid == openid))
    assert member is not None
    return member


def _session_cookie(centre: Centre) -> str | None:
    for cookie in centre.client.session.cookie_jar:
        if cookie.key == SESSION_COOKIE and cookie.value:
            return cookie.value
    return None


async def test_sign_in_then_every_page_shows_the_member(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=4)
    await sign_in(centre, "o_centre_alice01")
    card = await _text(centre, "/m/")
    assert "王小明" in card
    assert "银卡会员" in card
    assert re.search(r'id="balance">[\d,]+<', card)
    assert copy.KEEP_HEADING in card
    assert "<progress" in card
    for path in PAGES:
        body = await _text(centre, path)
        assert len(body.encode()) < PAGE_LIMIT_BYTES, path
        assert "<script src" not in body
        assert "https://" not in body.split("</style>")[1]
    code = await _text(centre, "/m/code")
    assert re.search(r'data-code="98\d{16}"', code)
    coupons = await _text(centre, "/m/coupons")
    assert "满300元减50元" in coupons
    assert copy.COUPON_SHOW in coupons


async def test_the_session_cookie_is_signed_http_only_and_lax(centre: Centre) -> None:
    await follower(centre.client, "o_centre_cookie1")
    start = await centre.client.get("/m/orders", allow_redirects=False)
    login = start.cookies[LOGIN_COOKIE]
    assert login["httponly"]
    assert login["samesite"] == "Lax"
    assert login["path"] == "/m/"
    location = start.headers["Location"]
    assert location.startswith(f"{centre.config.wechat.oauth_base_url}/connect/oauth2/authorize?")
    assert "scope=snsapi_base" in location
    assert location.endswith("#wechat_redirect")
    callback = await authorize(centre, "o_centre_cookie1", location)
    back = await centre.client.get(local(callback), allow_redirects=False)
    assert back.headers["Location"] == "/m/orders"  # back where the member was going
    cookie = back.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]
    assert int(cookie["max-age"]) == 12 * 3600


async def test_a_forged_code_shows_a_clear_page_and_signs_nobody_in(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    start = await centre.client.get("/m/", allow_redirects=False)
    state = re.search(r"state=([0-9a-f]+)", start.headers["Location"]).group(1)  # type: ignore[union-attr]
    body = await _text(centre, f"/m/auth?code=forged-code&state={state}", 400)
    assert copy.LINK_EXPIRED_TITLE in body
    assert "王小明" not in body
    assert _session_cookie(centre) is None
    await _text(centre, "/m/profile", 302)  # still signed out: off to WeChat again


async def test_a_replayed_code_is_refused(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    start = await centre.client.get("/m/", allow_redirects=False)
    callback = await authorize(centre, "o_centre_alice01", start.headers["Location"])
    assert (await centre.client.get(local(callback), allow_redirects=False)).status == 302
    centre.client.session.cookie_jar.clear()
    # The same callback again: no pending sign-in in this browser.
    body = await _text(centre, local(callback), 400)
    assert "王小明" not in body
    assert _session_cookie(centre) is None
    # Even with a pending sign-in and its own state, the used code gets WeChat's 40163.
    again = await centre.client.get("/m/", allow_redirects=False)
    state = re.search(r"state=([0-9a-f]+)", again.headers["Location"]).group(1)  # type: ignore[union-attr]
    code = re.search(r"code=([^&]+)", callback).group(1)  # type: ignore[union-attr]
    body = await _text(centre, f"/m/auth?code={code}&state={state}", 400)
    assert copy.LINK_EXPIRED_TITLE in body
    assert _session_cookie(centre) is None


async def test_a_mismatched_state_is_refused_and_the_code_not_spent(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    start = await centre.client.get("/m/", allow_redirects=False)
    callback = await authorize(centre, "o_centre_alice01", start.headers["Location"])
    code = re.search(r"code=([^&]+)", callback).group(1)  # type: ignore[union-attr]
    body = await _text(centre, f"/m/auth?code={code}&state={'0' * 32}", 400)
    assert copy.LINK_EXPIRED_TITLE in body
    assert _session_cookie(centre) is None
    assert code not in centre.standin.oauth_used  # never sent to WeChat


async def test_expired_and_forged_sessions_show_a_clear_page(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    member = await _member(centre, "o_centre_alice01")
    key = centre.config.member_centre.key("session", centre.config.wechat.secret)
    jar = centre.client.session.cookie_jar
    expired = {"m": member.id, "o": "o_centre_alice01", "c": "x", "e": int(time.time()) - 1}
    jar.update_cookies({SESSION_COOKIE: sign(key, expired)})
    body = await _text(centre, "/m/", 401)
    assert copy.SESSION_EXPIRED_TITLE in body
    assert "王小明" not in body
    forged = {"m": member.id, "o": "o_centre_alice01", "c": "x", "e": int(time.time()) + 999}
    for path in PAGES:
        jar.clear()
        jar.update_cookies({SESSION_COOKIE: sign(b"not the key", forged)})
        body = await _text(centre, path, 401)
        assert copy.SESSION_INVALID_TITLE in body
        assert "王小明" not in body


async def test_a_follower_who_is_not_a_member_gets_a_clear_page(centre: Centre) -> None:
    start = await centre.client.get("/m/", allow_redirects=False)
    callback = await authorize(centre, "o_centre_stranger", start.headers["Location"])
    body = await _text(centre, local(callback), 403)
    assert copy.NOT_MEMBER_TITLE in body
    assert _session_cookie(centre) is None


async def test_a_snapshot_visitor_is_nobody(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    centre.standin.snapshot_openids.add("o_centre_alice01")
    start = await centre.client.get("/m/", allow_redirects=False)
    callback = await authorize(centre, "o_centre_alice01", start.headers["Location"])
    body = await _text(centre, local(callback), 403)
    assert copy.SNAPSHOT_TITLE in body
    assert "王小明" not in body


async def test_changing_an_id_in_a_url_or_form_shows_nothing_of_another(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=2)
    await member_with_history(centre.client, "o_centre_bobby01", "李秘密", orders=5)
    alice = await _member(centre, "o_centre_alice01")
    bob = await _member(centre, "o_centre_bobby01")
    async with centre.client.app[wiring.SESSIONS]() as session:
        bob_coupon = await session.scalar(select(Coupon.code).where(Coupon.member_id == bob.id))
        bob_entries = (
            await session.scalars(select(LedgerEntry.id).where(LedgerEntry.member_id == bob.id))
        ).all()
        bob_orders = (
            await session.scalars(select(Order.id).where(Order.member_id == bob.id))
        ).all()
    assert bob_coupon is not None
    # Bob redeemed a gift: its pickup code and his balance are his alone.
    item_id = await _reward_item(centre)
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        rules = centre.config.programme
        bobs = await redeem(session, rules, bob.id, item_id, key="bob-gift", now=utcnow())
    assert isinstance(bobs, Redeemed)
    assert bobs.pickup_code is not None
    await sign_in(centre, "o_centre_alice01")
    secrets_of_bob = ("李秘密", bob_coupon, "o_centre_bobby01-", bobs.pickup_code)
    ids = {"member_id": bob.id, "id": bob.id, "openid": "o_centre_bobby01", "m": bob.id}
    query = "&".join(f"{k}={v}" for k, v in ids.items())
    addresses = [f"{path}?{query}" for path in PAGES] + [
        f"/m/points?before={max(bob_entries) + 1}&{query}",
        f"/m/orders?before={max(bob_orders) + 1}&{query}",
        f"/m/{bob.id}",
        f"/m/members/{bob.id}",
        "/m/code.json?member_id={bob.id}",
        f"/m/rewards/{item_id}?{query}",
        f"/m/redemptions/{bobs.redemption_id}?{query}",
    ]
    for address in addresses:
        response = await centre.client.get(address, allow_redirects=False)
        body = await response.text()
        assert not any(secret in body for secret in secrets_of_bob), address
    # Bob's coupon by its code: not found among Alice's.
    body = await _text(centre, f"/m/coupons/{bob_coupon}", 404)
    assert bob_coupon not in body
    assert copy.COUPON_NOT_FOUND in body
    # The member code page makes Alice's code, whatever the URL says.
    code_page = await _text(centre, f"/m/code?{query}")
    assert 'data-code="98' in code_page
    # Forms: the fields name no member, and extra ones change nothing of Bob's.
    csrf = re.search(r'name="csrf" value="([^"]+)"', await _text(centre, "/m/profile"))
    assert csrf is not None
    form = {"csrf": csrf.group(1), "marketing": "out", **{k: str(v) for k, v in ids.items()}}
    assert (
        await centre.client.post("/m/profile/marketing", data=form, allow_redirects=False)
    ).status == 303
    birthday = {"csrf": csrf.group(1), "month": "3", "day": "5", "confirm": "yes"}
    birthday |= {k: str(v) for k, v in ids.items()}
    answer = await centre.client.post("/m/profile/birthday", data=birthday, allow_redirects=False)
    assert answer.status == 303
    async with centre.client.app[wiring.SESSIONS]() as session:
        alice_now = await session.get_one(Member, alice.id)
        bob_now = await session.get_one(Member, bob.id)
    assert alice_now.marketing_opted_out_at is not None
    assert alice_now.birthday is not None
    assert bob_now.marketing_opted_out_at is None
    assert bob_now.birthday is None
    # Bob's redemption by its id: not found among Alice's.
    body = await _text(centre, f"/m/redemptions/{bobs.redemption_id}", 404)
    assert bobs.pickup_code not in body
    assert catalogue_copy.REDEMPTION_NOT_FOUND in body
    # The redemption form: Bob's id in its fields redeems for Alice; an item id that is no
    # catalogue item redeems nothing.
    confirm = await _text(centre, f"/m/rewards/{item_id}")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', confirm))
    fields |= {k: str(v) for k, v in ids.items()}
    answer = await centre.client.post(f"/m/rewards/{item_id}", data=fields, allow_redirects=False)
    assert answer.status == 303
    mine = await _text(centre, answer.headers["Location"])
    assert bobs.pickup_code not in mine
    fresh = fields | {"token": "0" * 24}
    missing = await centre.client.post("/m/rewards/999999", data=fresh, allow_redirects=False)
    assert missing.status == 404
    async with centre.client.app[wiring.SESSIONS]() as session:
        owners = (await session.scalars(select(Redemption.member_id).order_by(Redemption.id))).all()
        bob_after = await session.get_one(Member, bob.id)
    assert owners == [bob.id, alice.id]
    assert bob_after.points_balance == bob_now.points_balance


async def _reward_item(centre: Centre) -> int:
    """A gift anyone can redeem for 100 points."""
    spec = RewardSpec(name="帆布袋", kind="gift", delivery="pickup", points_price=100)
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        row = new_item(spec, utcnow())
        session.add(row)
        await session.flush()
        return row.id


async def test_forms_need_the_sessions_csrf_token(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    await sign_in(centre, "o_centre_alice01")
    for data in ({"marketing": "out"}, {"marketing": "out", "csrf": "wrong"}):
        answer = await centre.client.post("/m/profile/marketing", data=data, allow_redirects=False)
        assert answer.status == 403
    member = await _member(centre, "o_centre_alice01")
    assert member.marketing_opted_out_at is None


async def test_birthday_is_confirmed_then_recorded_once(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    await sign_in(centre, "o_centre_alice01")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await _text(centre, "/m/profile"))
    assert csrf is not None
    form = {"csrf": csrf.group(1), "month": "2", "day": "30"}
    bad = await centre.client.post("/m/profile/birthday", data=form)
    assert bad.status == 422
    assert copy.BIRTHDAY_BAD in await bad.text()
    form |= {"day": "29"}
    ask = await centre.client.post("/m/profile/birthday", data=form)
    assert "您的生日是 2 月 29 日" in await ask.text()
    assert (await _member(centre, "o_centre_alice01")).birthday is None  # not yet
    confirmed = await centre.client.post("/m/profile/birthday", data=form | {"confirm": "yes"})
    assert copy.DONE_BIRTHDAY in await confirmed.text()
    member = await _member(centre, "o_centre_alice01")
    assert (member.birthday.month, member.birthday.day) == (2, 29)  # type: ignore[union-attr]
    # Once only: another date is not recorded.
    again = form | {"month": "7", "day": "1", "confirm": "yes"}
    answer = await centre.client.post("/m/profile/birthday", data=again)
    assert copy.BIRTHDAY_LOCKED in await answer.text()
    member = await _member(centre, "o_centre_alice01")
    assert (member.birthday.month, member.birthday.day) == (2, 29)  # type: ignore[union-attr]


async def test_marketing_opt_out_and_back(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    await sign_in(centre, "o_centre_alice01")
    for wanted, shown in (("out", copy.MARKETING_OFF), ("in", copy.MARKETING_ON)):
        csrf = re.search(r'name="csrf" value="([^"]+)"', await _text(centre, "/m/profile"))
        assert csrf is not None
        data = {"csrf": csrf.group(1), "marketing": wanted}
        answer = await centre.client.post("/m/profile/marketing", data=data)
        assert f'id="marketing">{shown}<' in await answer.text()


async def test_an_erased_member_sees_nothing_with_an_old_session(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=1)
    await sign_in(centre, "o_centre_alice01")
    kept = _session_cookie(centre)
    assert kept is not None
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        member = await session.scalar(select(Member).where(Member.openid == "o_centre_alice01"))
        member.openid = None  # type: ignore[union-attr]
    for path in PAGES:
        centre.client.session.cookie_jar.clear()
        centre.client.session.cookie_jar.update_cookies({SESSION_COOKIE: kept})
        body = await _text(centre, path, 401)
        assert "王小明" not in body


async def test_points_history_pages_newest_first(centre: Centre) -> None:
    await member_with_history(centre.client, "o_centre_alice01", "王小明", orders=25)
    await sign_in(centre, "o_centre_alice01")
    first = await _text(centre, "/m/points")
    assert first.count('class="row"') == 20
    older = re.search(r'href="(/m/points\?before=\d+)"', first)
    assert older is not None
    second = await _text(centre, older.group(1))
    assert second.count('class="row"') == 5
    assert "/m/points?before=" not in second
    orders = await _text(centre, "/m/orders")
    assert orders.count('class="row"') == 20
    assert "/m/orders?before=" in orders


def test_codes_are_drawn_for_tills() -> None:
    """A full QR code (never a Micro QR, which segno picks for short data and many tills
    cannot read) and a Code 128 barcode as one path."""
    qr = qr_svg("982280206494993675", "会员码")
    size = int(re.search(r'viewBox="0 0 (\d+) ', qr).group(1))  # type: ignore[union-attr]
    assert size == (21 + 4) * 4  # version 1: 21 modules, a border of 2, 4 px a module
    bars = barcode_svg("982280206494993675", "会员码")
    assert bars.count("<path") == 1
    modules = Code128("982280206494993675").build()[0]
    drawn = ["0"] * len(modules)
    for start, width in re.findall(r"M(\d+) 0h(\d+)", bars):
        first = int(start) - QUIET_MODULES
        drawn[first : first + int(width)] = "1" * int(width)
    assert "".join(drawn) == modules  # every bar where the encoding puts it


def test_cookies_are_secure_when_the_public_url_is_https(centre: Centre) -> None:
    config = centre.config.model_copy(
        update={"server": ServerConfig(public_url="https://club.example.com")}
    )
    response = CentreAuth(config).start_login(make_mocked_request("GET", "/m/coupons"))
    cookie = response.cookies[LOGIN_COOKIE]
    assert cookie["secure"]
    assert "redirect_uri=https%3A%2F%2Fclub.example.com%2Fm%2Fauth" in response.headers["Location"]
