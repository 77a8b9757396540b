"""The member centre's points catalogue (积分兑换) under ``/m/rewards``: what the member can
redeem now, a confirmation, the redemption, and its result.

The same domain functions as chat (models/rewards.py, models/redemption.py): ``catalogue`` for the
list, ``choice`` for the confirmation (the checks ``redeem`` makes, without locks), ``redeem`` for
the form, ``member_redemption`` for the result; each page is one statement. "Me" comes from the
session only. An item id in the URL can only name a catalogue item (items are the same for everyone;
one closed to the member is refused with the reason), and a redemption is looked up among the
member's own, so another member's id shows nothing.

The confirmation page makes a random token that the form carries; the redemption's
idempotency key is built from the session's member and that token, so a double submit, a
reload of the POST or a retried request redeems once (the second answers with the first
redemption), and a token cannot collide with another member's. A redemption answers with a
redirect to its result page (post/redirect/get); a refusal with a plain page saying which.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from html import escape
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.exc import NoResultFound

from bot import wiring
from bot.pages.centre import page
from bot.pages.codes import barcode_svg
from bot.pages.session import MemberSession, member_page, notice, signed_out
from messages import catalogue_page_copy as copy
from messages import centre_copy, rewards_copy
from messages.copy import fen_to_yuan
from models.base import utcnow
from models.ledger import KeyConflict
from models.member_centre import still_member
from models.redemption import redeem
from models.rewards import (
    Offer,
    Redeemed,
    Refusal,
    Reward,
    catalogue,
    choice,
    member_redemption,
)
from models.rules import ProgrammeRules

CATALOGUE_PATH = "/m/rewards"
ROW_ID = re.compile(r"[1-9][0-9]{0,17}")
TOKEN = re.compile(r"[0-9a-f]{24}")
POINTS = re.compile(r"[0-9]{1,12}")
# Items a page lists (each row is about 600 bytes: 60 keep a page far under 100 KB).
PAGE_ITEMS = 60
# An image is shown only from a plain host (its origin goes into the page's CSP).
IMAGE_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?")

STYLE = """
.item{display:flex;gap:12px;align-items:center;padding:12px 0;border-top:1px solid #f0f0f2;
color:inherit;text-decoration:none}
.item:first-of-type{border-top:0}
.item .what{flex:1;min-width:0}
.item .name{font-weight:600}
.item .sub{color:#6e6e73;font-size:13px}
.pic{width:64px;height:64px;flex:none;border-radius:8px;object-fit:cover;background:#f0f0f2}
span.pic{display:flex;align-items:center;justify-content:center;font-size:24px;color:#8e8e93}
.price{color:#b8860b;font-weight:600}
.short{color:#c0392b;font-size:13px}
.hero{width:100%;height:auto;max-height:240px;object-fit:cover;border-radius:8px}
.fact{display:flex;justify-content:space-between;gap:12px;padding:8px 0;
border-top:1px solid #f0f0f2}
.fact span:last-child{text-align:right}
.actions{display:flex;gap:8px;margin-top:12px}
.actions button{flex:1}
"""


class _NotMember(Exception):
    """The session's member is no longer on record as such (rolls the redemption back)."""


def _rules(request: web.Request) -> ProgrammeRules:
    return request.config_dict[wiring.CONFIG].programme


def _gone(request: web.Request) -> web.Response:
    return signed_out(request, "invalid")


def _image(url: str) -> tuple[str, str] | None:
    """(the URL, its origin) for an image the page may show, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not IMAGE_HOST.fullmatch(parts.netloc):
        return None
    return url, f"{parts.scheme}://{parts.netloc}"


def _picture(reward: Reward, origins: set[str], css: str = "pic") -> str:
    """The item's image (its origin added to ``origins``), or a plain tile."""
    shown = _image(reward.image_url) if reward.image_url else None
    if shown is None:
        return f'<span class="pic" aria-hidden="true">{escape(reward.name[:1])}</span>'
    origins.add(shown[1])
    return f'<img class="{css}" src="{escape(shown[0])}" alt="" loading="lazy">'


def _terms(reward: Reward) -> str:
    """Stock left and the member's limit, when there are any."""
    parts = []
    if reward.stock is not None:
        parts.append(copy.STOCK_LEFT.format(stock=reward.stock))
    if reward.limit_count is not None:
        parts.append(copy.limit(reward.limit_count, reward.limit_period))
    return " · ".join(parts)


def _offer_row(offer: Offer, origins: set[str]) -> str:
    reward = offer.reward
    terms = _terms(reward)
    inner = (
        f"{_picture(reward, origins)}"
        f'<div class="what"><div class="name">{escape(reward.name)}</div>'
        f'<div class="sub">{escape(rewards_copy.what(reward))}</div>'
        f'<div class="price">{escape(rewards_copy.price(reward))}</div>'
        + (f'<div class="sub">{escape(terms)}</div>' if terms else "")
    )
    if offer.shortfall:
        short = copy.SHORT.format(shortfall=offer.shortfall)
        return (
            f'<div class="item muted">{inner}<div class="short">{escape(short)}</div></div></div>'
        )
    return (
        f'<a class="item" href="{CATALOGUE_PATH}/{reward.id}">{inner}</div>'
        f'<span class="button">{escape(copy.REDEEM)}</span></a>'
    )


def _from(request: web.Request) -> int:
    raw = request.query.get("from", "")
    return int(raw) if POINTS.fullmatch(raw) else 0


@member_page
async def catalogue_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """What the member can redeem now (their balance, each item's price, stock and limit),
    then what they are short of for the rest; cheapest first, a page at a time."""
    rules = _rules(request)
    try:
        async with request.config_dict[wiring.ENGINE].connect() as connection:
            shown = await catalogue(connection, rules, me.member_id, utcnow(), openid=me.openid)
    except NoResultFound:
        return _gone(request)
    start = _from(request)
    offers = shown.offers[start : start + PAGE_ITEMS]
    origins: set[str] = set()
    sections = []
    for title, listed in (
        (copy.CAN_REDEEM, [o for o in offers if not o.shortfall]),
        (copy.SAVE_UP, [o for o in offers if o.shortfall]),
    ):
        if listed:
            rows = "".join(_offer_row(offer, origins) for offer in listed)
            sections.append(f'<section class="card"><h2>{escape(title)}</h2>{rows}</section>')
    if not shown.offers:
        sections.append(
            f'<section class="card"><p class="intro">{escape(copy.EMPTY)}</p></section>'
        )
    more = (
        f'<a class="more" href="{CATALOGUE_PATH}?from={start + PAGE_ITEMS}">{escape(copy.MORE)}</a>'
        if len(shown.offers) > start + PAGE_ITEMS
        else ""
    )
    body = (
        f'<section class="card"><div class="label">{escape(copy.BALANCE_LABEL)}</div>'
        f'<div class="big" id="balance">{shown.balance:,}</div>'
        f'<div class="sub">{escape(rules.tier(shown.tier).name)}</div></section>'
        f"{''.join(sections)}{more}"
    )
    return page(request, "rewards", body, images=origins, style=STYLE)


def _back() -> str:
    return f'<a class="more" href="{CATALOGUE_PATH}">{escape(copy.BACK_TO_CATALOGUE)}</a>'


def _refused(request: web.Request, refused: Refusal) -> web.Response:
    """A plain page saying why (404 for an item that is not in the catalogue at all)."""
    text = copy.refusal(refused, _rules(request).zone)
    body = (
        f'<section class="card" id="refused" data-reason="{refused.reason}">'
        f"<h2>{escape(copy.REFUSED_HEADING)}</h2><p>{escape(text)}</p></section>{_back()}"
    )
    response = page(request, "rewards", body, style=STYLE)
    response.set_status(404 if refused.reason == "unknown" else 409)
    return response


def _fact(label: str, value: str) -> str:
    return f'<div class="fact"><span>{escape(label)}</span><span>{escape(value)}</span></div>'


def _item_id(request: web.Request) -> int | None:
    raw = request.match_info["item"]
    return int(raw) if ROW_ID.fullmatch(raw) else None


@member_page
async def confirm_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """The confirmation: the item, its price, what the member receives, their balance before
    and after; the form carries a new idempotency token. An item the member cannot redeem
    gets the refusal instead."""
    rules = _rules(request)
    item_id = _item_id(request)
    if item_id is None:
        return _refused(request, Refusal("unknown"))
    try:
        async with request.config_dict[wiring.ENGINE].connect() as connection:
            chosen = await choice(
                connection, rules, me.member_id, item_id, utcnow(), openid=me.openid
            )
    except NoResultFound:
        return _gone(request)
    if chosen.refusal is not None or chosen.reward is None:
        return _refused(request, chosen.refusal or Refusal("unknown"))
    reward = chosen.reward
    origins: set[str] = set()
    facts = [
        _fact(copy.CONFIRM_PRICE, rewards_copy.price(reward)),
        _fact(copy.CONFIRM_WHAT, rewards_copy.what(reward)),
    ]
    if reward.coupon_kind:
        condition = centre_copy.coupon_condition(rules.coupon_kind(reward.coupon_kind))
        if condition:
            facts.append(_fact(copy.CONFIRM_COUPON, condition))
    terms = _terms(reward)
    facts += [
        _fact(copy.CONFIRM_BALANCE, f"{chosen.balance:,}"),
        _fact(copy.CONFIRM_AFTER, f"{chosen.balance - reward.points_price:,}"),
    ]
    due = rewards_copy.CASH_DUE.format(yuan=fen_to_yuan(reward.cash_fen))
    cash = f'<p class="intro">{escape(due)}</p>' if reward.cash_fen else ""
    picture = _picture(reward, origins, "hero") if reward.image_url else ""
    body = (
        f'<section class="card">{picture}<h2>{escape(reward.name)}</h2>'
        + (f'<p class="intro">{escape(reward.description)}</p>' if reward.description else "")
        + (f'<p class="intro">{escape(terms)}</p>' if terms else "")
        + f"{''.join(facts)}{cash}"
        f'<p class="foot">{escape(copy.CONFIRM_NOTE)}</p>'
        f'<form method="post" action="{CATALOGUE_PATH}/{reward.id}">'
        f'<input type="hidden" name="csrf" value="{escape(me.csrf)}">'
        f'<input type="hidden" name="token" value="{secrets.token_hex(12)}">'
        f'<input type="hidden" name="points" value="{reward.points_price}">'
        f'<div class="actions"><a class="button light" href="{CATALOGUE_PATH}">'
        f"{escape(copy.CONFIRM_BACK)}</a>"
        f'<button type="submit">{escape(copy.CONFIRM_SUBMIT)}</button></div></form></section>'
    )
    return page(request, "rewards", body, forms=True, images=origins, style=STYLE)


@member_page
async def redeem_form(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """The confirmation's form: redeem once per confirmation, then off to the result."""
    item_id = _item_id(request)
    if item_id is None:
        return _refused(request, Refusal("unknown"))
    form = await request.post()
    token, points = form.get("token"), form.get("points")
    if not (
        isinstance(token, str)
        and TOKEN.fullmatch(token)
        and isinstance(points, str)
        and POINTS.fullmatch(points)
    ):
        return notice(
            centre_copy.FORM_EXPIRED_TITLE, centre_copy.FORM_EXPIRED_TEXT, 422, reenter=True
        )
    try:
        async with request.config_dict[wiring.SESSIONS]() as session, session.begin():
            # SQLite: redeem must be the transaction's first statement (its write_first).
            outcome = await redeem(
                session,
                _rules(request),
                me.member_id,
                item_id,
                key=f"centre:{me.member_id}:{token}",
                now=utcnow(),
                expected_points=int(points),
            )
            if not await still_member(session, me.member_id, me.openid):
                raise _NotMember
    except _NotMember:
        return _gone(request)
    except KeyConflict:
        # This confirmation's token already redeemed another item (an edited form).
        return notice(
            centre_copy.FORM_EXPIRED_TITLE, centre_copy.FORM_EXPIRED_TEXT, 409, reenter=True
        )
    if isinstance(outcome, Refusal):
        return _refused(request, outcome)
    return web.Response(
        status=303,
        headers={
            "Location": f"/m/redemptions/{outcome.redemption_id}",
            "Cache-Control": "no-store",
        },
    )


def _result(rules: ProgrammeRules, done: Redeemed) -> str:
    """What the redemption gave: the coupon (its code page) or the pickup code and how to
    collect, and where it stands now."""
    reward = done.reward
    status = copy.STATUS.get(done.status)
    heading = status or copy.DONE_HEADING
    if done.coupon_code:
        last = (done.coupon_valid_until or utcnow()) - timedelta(seconds=1)
        gave = (
            f"<p>{escape(copy.DONE_COUPON.format(day=last.astimezone(rules.zone)))}</p>"
            f'<a class="button" href="/m/coupons/{escape(done.coupon_code)}">'
            f"{escape(copy.DONE_COUPON_SHOW)}</a>"
        )
    else:
        code = done.pickup_code or ""
        if reward.kind == "gift":
            how = rewards_copy.HOW_SHIP if reward.delivery == "ship" else rewards_copy.HOW_PICKUP
        else:
            how = rewards_copy.HOW_SERVICE
        if done.cash_fen:
            how += rewards_copy.CASH_DUE.format(yuan=fen_to_yuan(done.cash_fen))
        codes = (
            f'<div class="barcode">{barcode_svg(code, copy.PICKUP_LABEL)}</div>'
            if done.status == "pending"
            else ""
        )
        gave = (
            f'<div class="code"><div class="label">{escape(copy.PICKUP_LABEL)}</div>{codes}'
            f'<div class="digits" id="pickup">{escape(code)}</div></div>'
            f'<p class="intro">{escape(how)}</p>'
        )
    return (
        f'<p class="done" role="status">{escape(heading)}</p>'
        f'<section class="card"><h2>{escape(reward.name)}</h2>{gave}'
        f"{_fact(copy.DONE_SPENT, f'{done.points:,}')}"
        f"{_fact(copy.DONE_BALANCE, f'{done.balance_after:,}')}"
        f"</section>{_back()}"
    )


@member_page
async def redemption_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """One of the member's redemptions; another member's id is not found."""
    raw = request.match_info["redemption"]
    rules = _rules(request)
    done = None
    if ROW_ID.fullmatch(raw):
        try:
            async with request.config_dict[wiring.ENGINE].connect() as connection:
                done = await member_redemption(connection, me.member_id, int(raw), openid=me.openid)
        except NoResultFound:
            return _gone(request)
    if done is None:
        body = (
            f'<section class="card"><p>{escape(copy.REDEMPTION_NOT_FOUND)}</p></section>{_back()}'
        )
        response = page(request, "rewards", body, style=STYLE)
        response.set_status(404)
        return response
    return page(request, "rewards", _result(rules, done), style=STYLE)


routes = [
    web.get(CATALOGUE_PATH, catalogue_page),
    web.get(CATALOGUE_PATH + "/{item}", confirm_page),
    web.post(CATALOGUE_PATH + "/{item}", redeem_form),
    web.get("/m/redemptions/{redemption}", redemption_page),
]
