"""The member centre's points catalogue over HTTP: the list (balance, price, stock, shortfall),
the confirmation, one redemption per confirmation, the result page, every refusal, and a
redemption from the page racing one in chat for the last item (PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot import wiring
from bot.pages.session import SESSION_COOKIE
from messages import catalogue_page_copy as copy
from messages import centre_copy, rewards_copy
from models.base import utcnow
from models.ledger import verify_ledger
from models.members import Member
from models.rewards import Redemption, RewardItem
from tests.bot.pages.centre_helpers import (
    PAGE_LIMIT_BYTES,
    Centre,
    add_item,
    member_with_history,
    sign_in,
)
from tests.handlers.test_chat_loyalty import say

ALICE = "o_rwpage_alice01"
BOB = "o_rwpage_bobby01"


async def change_item(centre: Centre, item_id: int, **fields: Any) -> None:
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        row = await session.get_one(RewardItem, item_id)
        for name, value in fields.items():
            setattr(row, name, value)


async def balance(centre: Centre, openid: str = ALICE) -> int:
    async with centre.client.app[wiring.SESSIONS]() as session:
        found = await session.scalar(select(Member.points_balance).where(Member.openid == openid))
    assert found is not None
    return found


async def redemptions(centre: Centre) -> int:
    async with centre.client.app[wiring.SESSIONS]() as session:
        return await session.scalar(select(func.count()).select_from(Redemption)) or 0


async def stock(centre: Centre, item_id: int) -> int | None:
    async with centre.client.app[wiring.SESSIONS]() as session:
        return (await session.get_one(RewardItem, item_id)).stock


async def ledger_mismatches(centre: Centre) -> list[Any]:
    async with centre.client.app[wiring.SESSIONS]() as session:
        return [m async for m in verify_ledger(session)]


async def text_of(centre: Centre, path: str, status: int = 200) -> str:
    response = await centre.client.get(path, allow_redirects=False)
    body = await response.text()
    assert response.status == status, (path, response.status, body[:800])
    return body


async def confirmation(centre: Centre, item_id: int) -> dict[str, str]:
    """The confirmation page's form fields (csrf, token, points)."""
    page = await text_of(centre, f"/m/rewards/{item_id}")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    assert set(fields) == {"csrf", "token", "points"}, page
    return fields


async def post(centre: Centre, item_id: int, form: dict[str, str]) -> tuple[int, str, str]:
    """(status, Location, body) of the confirmation's POST."""
    answer = await centre.client.post(f"/m/rewards/{item_id}", data=form, allow_redirects=False)
    return answer.status, answer.headers.get("Location", ""), await answer.text()


def reason(body: str) -> str | None:
    found = re.search(r'id="refused" data-reason="(\w+)"', body)
    return found.group(1) if found else None


@contextmanager
def statements(centre: Centre) -> Iterator[list[str]]:
    """The SELECTs the app's engine runs meanwhile (the webhook's background flush of members'
    last interaction writes on its own schedule)."""
    seen: list[str] = []
    engine = centre.client.app[wiring.ENGINE].sync_engine

    def record(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("SELECT"):
            seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def signed_in_member(centre: Centre, openid: str = ALICE, orders: int = 4) -> int:
    await member_with_history(centre.client, openid, "王小明", orders=orders)
    await sign_in(centre, openid)
    return await balance(centre, openid)


async def test_the_catalogue_shows_what_the_member_can_redeem_and_what_they_lack(
    centre: Centre,
) -> None:
    points = await signed_in_member(centre)
    coupon = await add_item(
        centre, name="无门槛10元券", kind="coupon", coupon_kind="cash_10", delivery=None
    )
    gift = await add_item(
        centre,
        name="联名帆布袋",
        points_price=points,
        cash_fen=1990,
        stock=3,
        limit_count=1,
        limit_period="month",
        image_url="https://img.example.com/bag.png",
    )
    dear = await add_item(centre, name="保温杯", points_price=points + 300)
    await change_item(centre, await add_item(centre, name="下架"), status="retired")
    await add_item(centre, name="金卡专享", tiers=["gold"])
    with statements(centre) as seen:
        response = await centre.client.get("/m/rewards")
    body = await response.text()
    assert response.status == 200
    assert len(seen) == 1  # one round trip for the page's data
    assert len(body.encode()) < PAGE_LIMIT_BYTES
    assert f'id="balance">{points:,}<' in body
    assert "aria-current=page>积分兑换<" in body
    for shown in (
        "无门槛10元券",
        "100 积分",
        f"{points:,} 积分 + ¥19.9",
        "仅剩 3 件 · 每月限兑 1 次",
        "实物礼品，到店凭提货码领取",
        "保温杯",
        copy.SHORT.format(shortfall=300),
    ):
        assert shown in body, shown
    assert "下架" not in body
    assert "金卡专享" not in body
    assert f'href="/m/rewards/{coupon}"' in body
    assert f'href="/m/rewards/{gift}"' in body
    assert f'href="/m/rewards/{dear}"' not in body  # short of points: nothing to click
    assert body.index("无门槛10元券") < body.index("联名帆布袋") < body.index("保温杯")
    assert '<img class="pic" src="https://img.example.com/bag.png"' in body
    # Images from the item's own host only; no script, nothing else from elsewhere.
    policy = response.headers["Content-Security-Policy"]
    assert policy.endswith("; img-src https://img.example.com")
    assert "<script" not in body


async def test_an_empty_catalogue_says_so(centre: Centre) -> None:
    await signed_in_member(centre, orders=1)
    body = await text_of(centre, "/m/rewards")
    assert copy.EMPTY in body
    assert (
        "img-src" not in (await centre.client.get("/m/rewards")).headers["Content-Security-Policy"]
    )


async def test_a_coupon_is_confirmed_redeemed_and_shown_with_its_code(centre: Centre) -> None:
    points = await signed_in_member(centre)
    item_id = await add_item(
        centre, name="满300减50券", kind="coupon", coupon_kind="full_300_50", delivery=None
    )
    with statements(centre) as seen:
        page = await text_of(centre, f"/m/rewards/{item_id}")
    assert len(seen) == 1
    assert "100 积分" in page
    assert rewards_copy.KIND_WHAT["coupon"] in page
    assert "满300元减50元" in page
    assert f"<span>{points - 100:,}</span>" in page  # what is left after
    assert await redemptions(centre) == 0  # asking is not redeeming
    form = await confirmation(centre, item_id)
    status, location, _ = await post(centre, item_id, form)
    assert status == 303
    assert re.fullmatch(r"/m/redemptions/\d+", location)
    assert await balance(centre) == points - 100
    with statements(centre) as seen:
        result = await text_of(centre, location)
    assert len(seen) == 1
    assert copy.DONE_HEADING in result
    code = re.search(r'href="/m/coupons/([A-Z0-9]+)"', result)
    assert code is not None
    assert f"<span>{copy.DONE_SPENT}</span><span>100</span>" in result
    coupon_page = await text_of(centre, f"/m/coupons/{code.group(1)}")
    assert "满300元减50元" in coupon_page


async def test_a_gift_gives_a_pickup_code_with_how_to_collect_and_the_cash_due(
    centre: Centre,
) -> None:
    points = await signed_in_member(centre)
    item_id = await add_item(centre, name="联名帆布袋", cash_fen=1990, stock=2)
    page = await text_of(centre, f"/m/rewards/{item_id}")
    assert rewards_copy.CASH_DUE.format(yuan="19.9") in page
    status, location, _ = await post(centre, item_id, await confirmation(centre, item_id))
    assert status == 303
    result = await text_of(centre, location)
    async with centre.client.app[wiring.SESSIONS]() as session:
        code = await session.scalar(select(Redemption.pickup_code))
    assert code is not None
    assert f'id="pickup">{code}<' in result
    assert rewards_copy.HOW_PICKUP in result
    assert "¥19.9" in result
    assert '<div class="barcode">' in result
    assert await balance(centre) == points - 100
    assert await stock(centre, item_id) == 1


async def test_a_double_submit_or_a_reload_redeems_once(centre: Centre) -> None:
    points = await signed_in_member(centre)
    item_id = await add_item(centre, stock=10)
    form = await confirmation(centre, item_id)
    answers = await asyncio.gather(*(post(centre, item_id, form) for _ in range(3)))
    again = await post(centre, item_id, form)  # the browser's reload of the POST
    locations = {location for _, location, _ in [*answers, again]}
    assert [status for status, _, _ in [*answers, again]] == [303] * 4
    assert len(locations) == 1  # the same redemption, its result page
    assert await redemptions(centre) == 1
    assert await balance(centre) == points - 100
    assert await stock(centre, item_id) == 9
    # A new confirmation is a new redemption.
    status, location, _ = await post(centre, item_id, await confirmation(centre, item_id))
    assert status == 303
    assert location not in locations
    assert await redemptions(centre) == 2
    assert await ledger_mismatches(centre) == []


async def test_every_refusal_gets_a_plain_page_saying_which(centre: Centre) -> None:
    points = await signed_in_member(centre)
    zone = centre.config.programme.zone

    async def refused_on_confirm(item_id: int, status: int = 409) -> str:
        body = await text_of(centre, f"/m/rewards/{item_id}", status)
        assert copy.REFUSED_HEADING in body
        assert 'name="token"' not in body  # no form to redeem with
        return body

    dear = await add_item(centre, points_price=points + 50)
    body = await refused_on_confirm(dear)
    assert reason(body) == "not_enough_points"
    assert rewards_copy.REFUSALS["not_enough_points"].format(shortfall=50) in body
    gold = await add_item(centre, tiers=["gold"])
    assert copy.PAGE_REFUSALS["not_in_tier"] in await refused_on_confirm(gold)
    soon = utcnow() + timedelta(days=2)
    later = await add_item(centre, valid_from=soon)
    body = await refused_on_confirm(later)
    assert rewards_copy.NOT_OPEN_YET.format(day=soon.astimezone(zone)) in body
    ended = await add_item(centre, valid_until=utcnow() - timedelta(minutes=1))
    ended_item = await text_of(centre, f"/m/rewards/{ended}", 409)
    assert rewards_copy.REFUSALS["ended"] in ended_item
    assert reason(await text_of(centre, "/m/rewards/999999", 404)) == "unknown"
    assert reason(await text_of(centre, "/m/rewards/not-a-number", 404)) == "unknown"
    # Refusals after the confirmation page was shown: the POST says which, writes nothing.
    once = await add_item(centre, limit_count=1, limit_period="month", stock=5)
    assert (await post(centre, once, await confirmation(centre, once)))[0] == 303
    assert reason(await refused_on_confirm(once)) == "limit_reached"
    last = await add_item(centre, stock=1)
    shown = await confirmation(centre, last)
    await change_item(centre, last, stock=0)
    status, _, body = await post(centre, last, shown)
    assert (status, reason(body)) == (409, "sold_out")
    assert rewards_copy.REFUSALS["sold_out"] in body
    pricier = await add_item(centre)
    shown = await confirmation(centre, pricier)
    await change_item(centre, pricier, points_price=120)
    status, _, body = await post(centre, pricier, shown)
    assert (status, reason(body)) == (409, "price_changed")
    assert copy.PAGE_REFUSALS["price_changed"] in body
    retired = await add_item(centre)
    shown = await confirmation(centre, retired)
    await change_item(centre, retired, status="retired")
    status, _, body = await post(centre, retired, shown)
    assert (status, reason(body)) == (409, "retired")
    assert await redemptions(centre) == 1
    assert await balance(centre) == points - 100


async def test_forms_need_the_csrf_token_and_a_confirmation(centre: Centre) -> None:
    await signed_in_member(centre)
    item_id = await add_item(centre)
    form = await confirmation(centre, item_id)
    for bad in ({**form, "csrf": "wrong"}, {k: v for k, v in form.items() if k != "csrf"}):
        assert (await post(centre, item_id, bad))[0] == 403
    for bad in ({**form, "token": "x"}, {**form, "points": "-1"}, {"csrf": form["csrf"]}):
        assert (await post(centre, item_id, bad))[0] == 422
    # A confirmation's token belongs to its item: edited to redeem another, nothing happens.
    assert (await post(centre, item_id, form))[0] == 303
    other = await add_item(centre, name="另一件")
    status, _, body = await post(centre, other, form)
    assert status == 409
    assert centre_copy.FORM_EXPIRED_TITLE in body
    assert await redemptions(centre) == 1


async def test_an_erased_members_old_session_redeems_nothing(centre: Centre) -> None:
    points = await signed_in_member(centre)
    item_id = await add_item(centre)
    form = await confirmation(centre, item_id)
    kept = next(c.value for c in centre.client.session.cookie_jar if c.key == SESSION_COOKIE)
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        member = await session.scalar(select(Member).where(Member.openid == ALICE))
        assert member is not None
        member.openid = None
        member_id = member.id
    jar = centre.client.session.cookie_jar
    for path in ("/m/rewards", f"/m/rewards/{item_id}"):
        jar.update_cookies({SESSION_COOKIE: kept})
        assert "王小明" not in await text_of(centre, path, 401)
    jar.update_cookies({SESSION_COOKIE: kept})
    status, _, _ = await post(centre, item_id, form)
    assert status == 401
    assert await redemptions(centre) == 0
    async with centre.client.app[wiring.SESSIONS]() as session:
        assert (await session.get_one(Member, member_id)).points_balance == points


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("who", ["same member", "two members"])
async def test_the_page_and_chat_racing_for_the_last_item_one_wins(
    centre: Centre, who: str
) -> None:
    """A redemption from the page and a chat 「确认」 (through the webhook) of the same last
    item at once: exactly one succeeds, the other is told it sold out, no points are lost."""
    page_points = await signed_in_member(centre, ALICE)
    chatter = ALICE if who == "same member" else BOB
    if chatter == BOB:
        await member_with_history(centre.client, BOB, "李四", orders=4)
    chat_points = await balance(centre, chatter)
    item_id = await add_item(centre, name="最后一个", stock=1)
    form = await confirmation(centre, item_id)
    assert (await say(centre.client, "积分兑换", chatter)).startswith("🎁")
    assert (await say(centre.client, "兑换 1", chatter)).startswith("您将使用 100 积分")
    (status, _, body), reply = await asyncio.gather(
        post(centre, item_id, form), say(centre.client, "确认", chatter)
    )
    page_won, chat_won = status == 303, reply.startswith("✅")
    assert page_won != chat_won, (status, reply)
    if page_won:
        assert reply == rewards_copy.REFUSALS["sold_out"]
    else:
        assert (status, reason(body)) == (409, "sold_out")
    assert await redemptions(centre) == 1
    assert await stock(centre, item_id) == 0
    if chatter == ALICE:
        assert await balance(centre) == page_points - 100
    else:
        assert await balance(centre, ALICE) == page_points - 100 * page_won
        assert await balance(centre, BOB) == chat_points - 100 * chat_won
    assert await ledger_mismatches(centre) == []
