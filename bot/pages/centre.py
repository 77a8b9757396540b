"""The member centre (会员中心) under ``/m/``: the card, the member code, coupons, points
history, orders, birthday and profile, marketing opt-out.

Every page is for the signed-in member only (bot/pages/session.py) and takes "me" from the
session, never from the URL or a form: a coupon is looked up among the member's own, a form's
fields name no member. Each page asks the database once (models/member_centre.py) and renders
on the server: no script but the member code's small refresh, nothing from another host,
well under 100 KB. Forms carry the session's CSRF token; a change answers with a redirect
(post/redirect/get) to the page and a notice chosen from a fixed list.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from html import escape

from aiohttp import web

from bot import wiring
from bot.pages.codes import barcode_svg, qr_svg
from bot.pages.session import (
    AUTH_PATH,
    CENTRE_PATH,
    MemberSession,
    auth_callback,
    member_page,
    notice,
    signed_out,
)
from bot.pages.shell import document, html_response
from handlers.tier import next_step
from messages import catalogue_page_copy as catalogue_copy
from messages import centre_copy as copy
from messages.copy import ledger_reason
from models.base import utcnow
from models.member_centre import (
    CardFacts,
    CouponFacts,
    card_facts,
    coupon_facts,
    history_facts,
    one_coupon,
    orders_facts,
    profile_facts,
    still_member,
)
from models.member_codes import CodeWindow, member_code
from models.members import record_birthday_once, set_marketing_opt_out
from models.rules import ProgrammeRules
from models.tiers import progress

# The centre's sections, in the order the nav shows them (the points catalogue's pages are
# bot/pages/rewards.py).
NAV: list[tuple[str, str, str]] = [
    ("card", CENTRE_PATH, copy.NAV_CARD),
    ("code", "/m/code", copy.NAV_CODE),
    ("coupons", "/m/coupons", copy.NAV_COUPONS),
    ("rewards", "/m/rewards", catalogue_copy.NAV_REWARDS),
    ("points", "/m/points", copy.NAV_POINTS),
    ("orders", "/m/orders", copy.NAV_ORDERS),
    ("profile", "/m/profile", copy.NAV_PROFILE),
]

CURSOR = re.compile(r"[0-9]{1,18}")
COUPON_CODE = re.compile(r"[A-Z0-9]{1,32}")
EARLIEST_YEAR = 1900
# A birthday given without a year is stored in this leap year (as chat does: 29 February).
NO_YEAR = 1904

STYLE = """
.top{display:grid;grid-template-columns:repeat(4,1fr);gap:6px;margin:0 0 4px}
.top a{padding:6px 0;border-radius:16px;background:#fff;color:#1d1d1f;text-align:center;
text-decoration:none;font-size:13px;white-space:nowrap}
.top a[aria-current]{background:#1d1d1f;color:#fff}
.member{background:linear-gradient(135deg,#2c2c2e,#5a4a1f);color:#fff}
.member .tier{font-size:26px;font-weight:700;color:#f5d77a;margin:4px 0}
.member .perks{font-size:14px;opacity:.85}
progress{width:100%;height:10px;appearance:none;border:0;border-radius:5px;background:#e5e5ea}
progress::-webkit-progress-bar{background:#e5e5ea;border-radius:5px}
progress::-webkit-progress-value{background:#c9a227;border-radius:5px}
progress::-moz-progress-bar{background:#c9a227;border-radius:5px}
.big{font-size:34px;font-weight:700}
.row{display:flex;justify-content:space-between;gap:8px;padding:10px 0;border-top:1px solid #f0f0f2}
.row:first-of-type{border-top:0}
.row .what{flex:1;min-width:0}
.row .sub{color:#6e6e73;font-size:13px}
.row .button{align-self:center;flex:none}
.plus{color:#1a7f37;font-weight:600}.minus{color:#c0392b;font-weight:600}
.code{text-align:center}
.barcode{height:96px;margin:8px 0}
.barcode svg{height:100%}
.digits{font:600 20px/1.4 ui-monospace,Menlo,monospace;letter-spacing:1px}
.qr{max-width:200px;margin:8px auto}
.coupon .name{font-weight:600}
.muted{opacity:.6}
.button,button{display:inline-block;border:0;border-radius:8px;padding:10px 16px;
background:#1d1d1f;color:#fff;font-size:15px;text-decoration:none}
.button.light,button.light{background:#e5e5ea;color:#1d1d1f}
form.inline{display:inline}
select,input{font-size:16px;padding:8px;border:1px solid #d2d2d7;border-radius:8px;background:#fff}
.fields{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0}
.done{background:#e8f5e9;border-radius:8px;padding:10px 12px;font-size:14px}
.more{display:block;text-align:center;padding:12px;color:#1d1d1f}
"""

# What the centre tells a member after a change (chosen by a fixed key, never echoed input).
DONE = {
    "birthday": copy.DONE_BIRTHDAY,
    "birthday_already": copy.BIRTHDAY_LOCKED,
    "opted_out": copy.DONE_OPTED_OUT,
    "opted_in": copy.DONE_OPTED_IN,
}


def _rules(request: web.Request) -> ProgrammeRules:
    return request.config_dict[wiring.CONFIG].programme


def _zone_day(moment: datetime, rules: ProgrammeRules) -> date:
    return moment.astimezone(rules.zone).date()


def page(
    request: web.Request,
    current: str,
    body: str,
    *,
    script: str = "",
    forms: bool = False,
    images: Iterable[str] = (),
    style: str = "",
) -> web.Response:
    """A centre page: the nav, then ``body`` (escaped HTML); ``images``: the origins of the
    images it shows (see ``html_response``); ``style``: the page's own CSS."""
    rules = _rules(request)
    links = "".join(
        f'<a href="{path}"{" aria-current=page" if key == current else ""}>{escape(label)}</a>'
        for key, path, label in NAV
    )
    nonce = secrets.token_urlsafe(16) if script else ""
    html = document(
        f"{copy.PAGE_TITLE} · {rules.brand_name}",
        f'<nav class="top">{links}</nav>{body}',
        STYLE + style,
        script,
        nonce,
    )
    return html_response(html, 200, nonce=nonce, forms=forms, images=images)


def _gone(request: web.Request) -> web.Response:
    """The session's member is no longer on record as such: nothing to show."""
    return signed_out(request, "invalid")


# The card ----------------------------------------------------------------------------------


def _keep_text(rules: ProgrammeRules, facts: CardFacts) -> str:
    """What keeps the member's tier at the re-evaluation, and how far they are from it."""
    tier = rules.tier(facts.tier)
    months = rules.tier_window_months
    if tier == rules.tiers[0]:
        return copy.KEEP_BASIC.format(tier=tier.name)
    if tier.min_spend_fen is not None:
        rule = copy.KEEP_BOTH.format(
            months=months,
            orders=tier.min_orders,
            yuan=copy.yuan(tier.min_spend_fen),
            tier=tier.name,
        )
    elif tier.top_spend_percent is not None:
        rule = copy.KEEP_TOP.format(
            months=months, orders=tier.min_orders, percent=tier.top_spend_percent, tier=tier.name
        )
    else:
        rule = copy.KEEP_ORDERS.format(months=months, orders=tier.min_orders, tier=tier.name)
    orders_short = max(0, tier.min_orders - facts.stats.orders)
    spend_short = (
        None if tier.min_spend_fen is None else max(0, tier.min_spend_fen - facts.stats.spend_fen)
    )
    if orders_short == 0 or spend_short == 0:
        return f"{rule}{copy.KEEP_MET}"
    if spend_short is not None:
        short = copy.KEEP_SHORT_BOTH.format(orders=orders_short, yuan=copy.yuan(spend_short))
    else:
        short = copy.KEEP_SHORT_ORDERS.format(orders=orders_short)
    return f"{rule}{short}"


def _progress_percent(rules: ProgrammeRules, facts: CardFacts) -> int:
    """How far along the way to the next tier (by whichever of orders and spend is nearer)."""
    step = progress(rules, facts.tier, facts.stats)
    nxt = step.next_tier
    if nxt is None:
        return 100
    shares = [facts.stats.orders / nxt.min_orders if nxt.min_orders else 1.0]
    if nxt.min_spend_fen:
        shares.append(facts.stats.spend_fen / nxt.min_spend_fen)
    return max(0, min(100, int(max(shares) * 100)))


def render_card(rules: ProgrammeRules, facts: CardFacts) -> str:
    """The card's body."""
    tier = rules.tier(facts.tier)
    step = progress(rules, facts.tier, facts.stats)
    hello = copy.HELLO_NAMED.format(name=facts.name) if facts.name else copy.HELLO
    perks = copy.TIER_DISCOUNT.format(
        discount=tier.discount, multiplier=f"{tier.multiplier.normalize():f}"
    )
    window = copy.WINDOW_STATS.format(
        months=rules.tier_window_months,
        orders=facts.stats.orders,
        yuan=copy.yuan(facts.stats.spend_fen),
    )
    percent = _progress_percent(rules, facts)
    by_day: dict[date, int] = {}
    for expires_at, points in facts.expiring:
        # A lot expires at the start of a local day: the last day to use it is the one before.
        day = _zone_day(expires_at - timedelta(seconds=1), rules)
        by_day[day] = by_day.get(day, 0) + points
    expiring = (
        "".join(
            f'<div class="row">{escape(copy.EXPIRING_LINE.format(points=p, day=d))}</div>'
            for d, p in sorted(by_day.items())[:6]
        )
        or f'<p class="intro">{escape(copy.EXPIRING_NONE)}</p>'
    )
    policy = rules.points
    expiry_rule = (
        copy.EXPIRY_RULE_ROLLING.format(months=policy.expiry_months)
        if policy.expiry_policy == "rolling"
        else copy.EXPIRY_RULE_YEAR_END
    )
    return (
        f'<section class="card member"><div>{escape(hello)}</div>'
        f'<div class="tier">{escape(tier.name)}</div>'
        f'<div class="perks">{escape(perks)}</div></section>'
        f'<section class="card"><h2>{escape(copy.NEXT_HEADING)}</h2>'
        f'<progress max="100" value="{percent}" aria-label="{escape(copy.NEXT_HEADING)}">'
        f"{percent}%</progress><p>{escape(next_step(step))}</p>"
        f'<p class="intro">{escape(window)}</p>'
        f"<h2>{escape(copy.KEEP_HEADING)}</h2><p>{escape(_keep_text(rules, facts))}</p></section>"
        f'<section class="card"><div class="label">{escape(copy.BALANCE_LABEL)}</div>'
        f'<div class="big" id="balance">{facts.balance:,}</div>'
        f"<h2>{escape(copy.EXPIRING_HEADING)}</h2>{expiring}"
        f'<p class="foot">{escape(expiry_rule)}</p></section>'
    )


@member_page
async def card_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """The card: tier with its progress and what keeps it, balance and what expires when."""
    rules = _rules(request)
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        facts = await card_facts(connection, rules, me.member_id, me.openid, utcnow())
    if facts is None:
        return _gone(request)
    return page(request, "card", render_card(rules, facts))


# The member code ---------------------------------------------------------------------------


def _code_key(request: web.Request) -> bytes:
    config = request.config_dict[wiring.CONFIG]
    return config.member_centre.key("member-code", config.wechat.secret)


def _window(request: web.Request) -> CodeWindow:
    return request.config_dict[wiring.CONFIG].member_centre.code_window


def _spaced(code: str) -> str:
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def current_code(request: web.Request, member_id: int) -> tuple[str, int]:
    """The member's code now, and the seconds until the next one."""
    window = _window(request)
    now = time.time()
    step = int(now) // window.seconds
    left = max(1, math.ceil(window.ends(step) - now))
    return member_code(_code_key(request), member_id, step), left


CODE_SCRIPT = """(function(){
var box=document.getElementById('membercode'),count=document.getElementById('countdown'),
left=+count.dataset.left,timer=0,busy=false;
function show(){count.textContent=left>0?count.dataset.text.replace('{seconds}',left):
count.dataset.soon;}
function tick(){clearTimeout(timer);show();if(left<=0){next();return;}left--;
timer=setTimeout(tick,1000);}
function next(){if(busy)return;busy=true;
fetch('/m/code.json',{credentials:'same-origin',cache:'no-store'}).then(function(r){
if(r.status===401){location.reload();return null;}if(!r.ok)throw new Error(r.status);
return r.json();}).then(function(d){busy=false;if(!d)return;
document.getElementById('qr').innerHTML=d.qr;
document.getElementById('barcode').innerHTML=d.barcode;
document.getElementById('digits').textContent=d.digits;
box.dataset.code=d.code;left=Math.max(1,d.expires_in);tick();}).catch(function(){
busy=false;count.textContent=count.dataset.offline;clearTimeout(timer);
timer=setTimeout(next,5000);});}
document.addEventListener('visibilitychange',function(){if(!document.hidden)next();});
tick();})();"""


@member_page
async def code_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """The member code as a barcode and a QR code, refreshed in place as it rotates."""
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        if not await still_member(connection, me.member_id, me.openid):
            return _gone(request)
    code, left = current_code(request, me.member_id)
    body = (
        f'<section class="card code" id="membercode" data-code="{code}">'
        f"<h2>{escape(copy.CODE_HEADING)}</h2>"
        f'<p class="intro">{escape(copy.CODE_HINT)}</p>'
        f'<div class="barcode" id="barcode">{barcode_svg(code, copy.CODE_HEADING)}</div>'
        f'<div class="digits" id="digits">{_spaced(code)}</div>'
        f'<div class="qr" id="qr">{qr_svg(code, copy.CODE_HEADING)}</div>'
        f'<p class="intro" id="countdown" data-left="{left}" '
        f'data-text="{escape(copy.CODE_REFRESH)}" data-soon="{escape(copy.CODE_REFRESH_SOON)}" '
        f'data-offline="{escape(copy.CODE_OFFLINE)}">'
        f"{escape(copy.CODE_REFRESH.format(seconds=left))}</p>"
        f'<p class="foot">{escape(copy.CODE_ROTATES)}</p></section>'
    )
    return page(request, "code", body, script=CODE_SCRIPT)


@member_page
async def code_json(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """The member's current code for the page's refresh."""
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        if not await still_member(connection, me.member_id, me.openid):
            return _gone(request)
    code, left = current_code(request, me.member_id)
    body = {
        "code": code,
        "digits": _spaced(code),
        "qr": qr_svg(code, copy.CODE_HEADING),
        "barcode": barcode_svg(code, copy.CODE_HEADING),
        "expires_in": left,
    }
    return web.json_response(body, headers={"Cache-Control": "private, no-store"})


# Coupons -----------------------------------------------------------------------------------


def _coupon_row(
    rules: ProgrammeRules, coupon: CouponFacts, now: datetime, link: bool, muted: bool
) -> str:
    kind = rules.coupon_kind(coupon.kind)
    name = kind.name if kind else coupon.kind
    if coupon.status == "redeemed" and coupon.redeemed_at is not None:
        when = copy.COUPON_USED_ON.format(day=_zone_day(coupon.redeemed_at, rules))
    elif coupon.upcoming(now):
        when = copy.COUPON_FROM.format(day=_zone_day(coupon.valid_from, rules))
    else:
        last = _zone_day(coupon.valid_until - timedelta(seconds=1), rules)
        when = copy.COUPON_UNTIL.format(day=last)
    action = (
        f'<a class="button" href="/m/coupons/{coupon.code}">{escape(copy.COUPON_SHOW)}</a>'
        if link
        else ""
    )
    return (
        f'<div class="row coupon{" muted" if muted else ""}"><div class="what">'
        f'<div class="name">{escape(name)}</div>'
        f'<div class="sub">{escape(copy.coupon_condition(kind))}</div>'
        f'<div class="sub">{escape(when)}</div></div>{action}</div>'
    )


def render_coupons(rules: ProgrammeRules, coupons: list[CouponFacts], now: datetime) -> str:
    """The coupons' body: usable, not yet valid, used, expired, withdrawn: each apart."""
    groups = [
        (copy.COUPONS_USABLE, [c for c in coupons if c.usable(now)], True),
        (copy.COUPONS_UPCOMING, [c for c in coupons if c.upcoming(now)], False),
        (copy.COUPONS_USED, [c for c in coupons if c.status == "redeemed"], False),
        (copy.COUPONS_EXPIRED, [c for c in coupons if c.expired(now)], False),
        (copy.COUPONS_REVOKED, [c for c in coupons if c.status == "revoked"], False),
    ]
    sections = []
    for title, listed, usable in groups:
        if not listed and not usable:
            continue
        rows = "".join(_coupon_row(rules, c, now, usable, not usable) for c in listed) or (
            f'<p class="intro">{escape(copy.COUPONS_NONE)}</p>'
        )
        sections.append(f'<section class="card"><h2>{escape(title)}</h2>{rows}</section>')
    return "".join(sections)


@member_page
async def coupons_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """My coupons, usable first; each usable one opens its code for the till."""
    now = utcnow()
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        coupons = await coupon_facts(connection, me.member_id, me.openid, now)
    if coupons is None:
        return _gone(request)
    return page(request, "coupons", render_coupons(_rules(request), coupons, now))


@member_page
async def coupon_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """One of my coupons with its code as a barcode and a QR code. A code that is not one of
    mine is not found, whoever's it is."""
    code = request.match_info["code"]
    rules = _rules(request)
    now = utcnow()
    found, coupon = False, None
    if COUPON_CODE.fullmatch(code):
        async with request.config_dict[wiring.ENGINE].connect() as connection:
            found, coupon = await one_coupon(connection, me.member_id, me.openid, code)
        if not found:
            return _gone(request)
    back = f'<a class="more" href="/m/coupons">{escape(copy.BACK_TO_COUPONS)}</a>'
    if coupon is None:
        body = f'<section class="card"><p>{escape(copy.COUPON_NOT_FOUND)}</p></section>{back}'
        response = page(request, "coupons", body)
        response.set_status(404)
        return response
    kind = rules.coupon_kind(coupon.kind)
    codes = ""
    if coupon.usable(now):
        codes = (
            f'<div class="barcode">{barcode_svg(coupon.code, copy.COUPON_CODE.format(code=""))}'
            f'</div><div class="digits">{escape(copy.COUPON_CODE.format(code=coupon.code))}</div>'
            f'<div class="qr">{qr_svg(coupon.code, copy.COUPON_CODE.format(code=""))}</div>'
            f'<p class="intro">{escape(copy.COUPON_HINT)}</p>'
        )
    body = (
        f'<section class="card code"><h2>{escape(kind.name if kind else coupon.kind)}</h2>'
        f"{codes}{_coupon_row(rules, coupon, now, False, not codes)}</section>{back}"
    )
    return page(request, "coupons", body)


# Points history and orders -----------------------------------------------------------------


def _cursor(request: web.Request) -> int | None:
    raw = request.query.get("before", "")
    return int(raw) if CURSOR.fullmatch(raw) else None


@member_page
async def points_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """My points: balance, then the ledger newest first, a page at a time."""
    rules = _rules(request)
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        facts = await history_facts(connection, me.member_id, me.openid, _cursor(request))
    if facts is None:
        return _gone(request)
    rows = (
        "".join(
            f'<div class="row"><div class="what">{escape(ledger_reason(e.kind, e.reason))}'
            f'<div class="sub">{e.created_at.astimezone(rules.zone):%Y-%m-%d %H:%M} · '
            f"{escape(copy.POINTS_BALANCE_AFTER.format(balance=e.balance_after))}</div></div>"
            f'<div class="{"plus" if e.points >= 0 else "minus"}">{e.points:+,}</div></div>'
            for e in facts.entries
        )
        or f'<p class="intro">{escape(copy.POINTS_NONE)}</p>'
    )
    more = (
        f'<a class="more" href="/m/points?before={facts.older}">{escape(copy.OLDER)}</a>'
        if facts.older
        else ""
    )
    body = (
        f'<section class="card"><div class="label">{escape(copy.BALANCE_LABEL)}</div>'
        f'<div class="big" id="balance">{facts.balance:,}</div></section>'
        f'<section class="card">{rows}</section>{more}'
    )
    return page(request, "points", body)


@member_page
async def orders_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """My orders, newest first, with the points each earned and any refund."""
    rules = _rules(request)
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        facts = await orders_facts(connection, me.member_id, me.openid, _cursor(request))
    if facts is None:
        return _gone(request)
    rows = []
    for order in facts.orders:
        channel = copy.CHANNELS.get(order.channel, order.channel)
        line = copy.ORDER_LINE.format(yuan=copy.yuan(order.amount_fen), channel=channel)
        refund = (
            f" · {copy.ORDER_REFUNDED.format(yuan=copy.yuan(order.refunded_fen))}"
            if order.refunded_fen
            else ""
        )
        rows.append(
            f'<div class="row"><div class="what"><div>{escape(line)}</div>'
            f'<div class="sub">{order.paid_at.astimezone(rules.zone):%Y-%m-%d %H:%M}'
            f"{escape(refund)}</div></div>"
            f'<div class="plus">{escape(copy.ORDER_POINTS.format(points=order.points_earned))}'
            "</div></div>"
        )
    listed = "".join(rows) or f'<p class="intro">{escape(copy.ORDERS_NONE)}</p>'
    more = (
        f'<a class="more" href="/m/orders?before={facts.older}">{escape(copy.OLDER)}</a>'
        if facts.older
        else ""
    )
    return page(request, "orders", f'<section class="card">{listed}</section>{more}')


# Profile, birthday, marketing --------------------------------------------------------------


def _masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 7 else "****"


def _csrf(me: MemberSession) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(me.csrf)}">'


def _birthday_form(rules: ProgrammeRules, me: MemberSession, problem: str = "") -> str:
    months = "".join(f'<option value="{m}">{m}</option>' for m in range(1, 13))
    days = "".join(f'<option value="{d}">{d}</option>' for d in range(1, 32))
    multiplier = f"{rules.points.birthday_multiplier.normalize():f}"
    warn = f'<p class="minus">{escape(problem)}</p>' if problem else ""
    return (
        f'<p class="intro">{escape(copy.BIRTHDAY_INTRO.format(multiplier=multiplier))}</p>{warn}'
        f'<form method="post" action="/m/profile/birthday">{_csrf(me)}<div class="fields">'
        f'<select name="month" aria-label="{escape(copy.BIRTHDAY_MONTH)}">{months}</select>'
        f"<span>{escape(copy.BIRTHDAY_MONTH)}</span>"
        f'<select name="day" aria-label="{escape(copy.BIRTHDAY_DAY)}">{days}</select>'
        f"<span>{escape(copy.BIRTHDAY_DAY)}</span>"
        f'<input name="year" inputmode="numeric" maxlength="4" size="6" '
        f'placeholder="{escape(copy.BIRTHDAY_YEAR)}" aria-label="{escape(copy.BIRTHDAY_YEAR)}">'
        f'</div><button type="submit">{escape(copy.BIRTHDAY_SUBMIT)}</button></form>'
    )


@member_page
async def profile_page(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """My profile: name, masked phone, the birthday (given once), the marketing choice."""
    rules = _rules(request)
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        facts = await profile_facts(connection, me.member_id, me.openid)
    if facts is None:
        return _gone(request)
    done = DONE.get(request.query.get("done", ""), "")
    if facts.birthday is not None:
        value = copy.BIRTHDAY_VALUE.format(month=facts.birthday.month, day=facts.birthday.day)
        birthday = f'<p>{escape(value)}</p><p class="intro">{escape(copy.BIRTHDAY_LOCKED)}</p>'
    else:
        birthday = _birthday_form(rules, me)
    state = copy.MARKETING_OFF if facts.opted_out else copy.MARKETING_ON
    toggle = copy.MARKETING_START if facts.opted_out else copy.MARKETING_STOP
    wanted = "in" if facts.opted_out else "out"
    body = (
        (f'<p class="done" role="status">{escape(done)}</p>' if done else "")
        + '<section class="card">'
        f'<div class="row"><span>{escape(copy.NAME_LABEL)}</span>'
        f"<span>{escape(facts.name or copy.NOT_GIVEN)}</span></div>"
        f'<div class="row"><span>{escape(copy.PHONE_LABEL)}</span>'
        f"<span>{escape(_masked(facts.phone) if facts.phone else copy.NOT_GIVEN)}</span></div>"
        "</section>"
        f'<section class="card"><h2>{escape(copy.BIRTHDAY_LABEL)}</h2>{birthday}</section>'
        f'<section class="card"><h2>{escape(copy.MARKETING_LABEL)}</h2>'
        f'<p id="marketing">{escape(state)}</p>'
        f'<form method="post" action="/m/profile/marketing">{_csrf(me)}'
        f'<input type="hidden" name="marketing" value="{wanted}">'
        f'<button type="submit" class="light">{escape(toggle)}</button></form>'
        f'<p class="foot">{escape(copy.MARKETING_NOTE)}</p></section>'
    )
    return page(request, "profile", body, forms=True)


def _given_birthday(rules: ProgrammeRules, form: dict[str, str]) -> date | str:
    """The date the form gives, or the copy saying what is wrong with it."""
    try:
        month, day = int(form.get("month", "")), int(form.get("day", ""))
        year_text = form.get("year", "").strip()
        year = int(year_text) if year_text else NO_YEAR
        given = date(year, month, day)
    except ValueError:
        return copy.BIRTHDAY_BAD
    today = utcnow().astimezone(rules.zone).date()
    if year != NO_YEAR and not date(EARLIEST_YEAR, 1, 1) <= given <= today:
        return copy.BIRTHDAY_FUTURE
    return given


def _redirect(path: str) -> web.Response:
    return web.Response(status=303, headers={"Location": path, "Cache-Control": "no-store"})


@member_page
async def birthday_form(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """A birthday from the form: repeated back for a confirmation, then recorded once (the
    chat's rule: one already on record is changed only by staff; the birthday-month bonus
    starts the first day of the next month)."""
    rules = _rules(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    given = _given_birthday(rules, form)
    if isinstance(given, str):
        body = f'<section class="card"><h2>{escape(copy.BIRTHDAY_LABEL)}</h2>'
        body += f"{_birthday_form(rules, me, given)}</section>"
        response = page(request, "profile", body, forms=True)
        response.set_status(422)
        return response
    if form.get("confirm") != "yes":
        year = "" if given.year == NO_YEAR else str(given.year)
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{value}">'
            for name, value in (("month", given.month), ("day", given.day), ("year", year))
        )
        question = copy.BIRTHDAY_CONFIRM.format(month=given.month, day=given.day)
        body = (
            f'<section class="card"><h2>{escape(copy.BIRTHDAY_LABEL)}</h2>'
            f"<p>{escape(question)}</p>"
            f'<form method="post" action="/m/profile/birthday">{_csrf(me)}{hidden}'
            '<input type="hidden" name="confirm" value="yes">'
            f'<button type="submit">{escape(copy.BIRTHDAY_CONFIRM_YES)}</button> '
            f'<a class="button light" href="/m/profile">{escape(copy.BIRTHDAY_CONFIRM_NO)}</a>'
            "</form></section>"
        )
        return page(request, "profile", body, forms=True)
    local = utcnow().astimezone(rules.zone).date()
    bonus_from = date(local.year + local.month // 12, local.month % 12 + 1, 1)
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        recorded = await record_birthday_once(session, me.member_id, given, bonus_from)
    return _redirect(f"/m/profile?done={'birthday' if recorded else 'birthday_already'}")


@member_page
async def marketing_form(request: web.Request, me: MemberSession) -> web.StreamResponse:
    """退订 / 恢复 marketing pushes, as 退订 and 恢复推送 do in chat."""
    wanted = (await request.post()).get("marketing")
    if wanted not in ("in", "out"):
        return notice(copy.FORM_EXPIRED_TITLE, copy.FORM_EXPIRED_TEXT, 422, reenter=True)
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        await set_marketing_opt_out(session, me.member_id, wanted == "out", utcnow())
    return _redirect(f"/m/profile?done=opted_{wanted}")


async def to_centre(request: web.Request) -> web.Response:
    """``/m`` without its slash."""
    return _redirect(CENTRE_PATH)


async def not_found(request: web.Request) -> web.Response:
    """Any other address under /m/."""
    return notice(copy.NOT_FOUND_TITLE, copy.NOT_FOUND_TEXT, 404, reenter=True)


routes = [
    web.get(AUTH_PATH, auth_callback),
    web.get(CENTRE_PATH, card_page),
    web.get("/m", to_centre),
    web.get("/m/code", code_page),
    web.get("/m/code.json", code_json),
    web.get("/m/coupons", coupons_page),
    web.get("/m/coupons/{code}", coupon_page),
    web.get("/m/points", points_page),
    web.get("/m/orders", orders_page),
    web.get("/m/profile", profile_page),
    web.post("/m/profile/birthday", birthday_form),
    web.post("/m/profile/marketing", marketing_form),
    web.get("/m/{tail:.*}", not_found),
]
