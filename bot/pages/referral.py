"""``GET /r/{code}``: the page a member's share link opens, with their parametric QR code.

It is for the friend: the brand, the offer, and the QR code to long-press (drawn here as inline
SVG from the code's URL). Nothing about the referrer is shown: a link travels. An unknown or
malformed code gets one 404 page; a code whose QR code has expired says how to get a new one.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from bot import wiring
from bot.pages.shell import document, html_response
from bot.wechat.referral_links import qr_svg
from messages import referral_copy as copy
from models.base import utcnow
from models.referrals import link_by_code, referral_code
from models.rules import ProgrammeRules


def _gift(rules: ProgrammeRules) -> str | None:
    settings = rules.referrals
    kind = rules.coupon_kind(settings.newcomer_coupon) if settings.newcomer_coupon else None
    parts = [f"【{kind.name}】"] if kind else []
    if settings.newcomer_points:
        parts.append(f"{settings.newcomer_points}积分")
    return "和".join(parts) or None


def render_share_page(rules: ProgrammeRules, qr_url: str | None) -> str:
    """The share page: the offer and the QR code (or how to get a fresh one)."""
    brand = rules.brand_name
    gift = _gift(rules)
    offer = copy.PAGE_OFFER.format(gift=gift) if gift else copy.PAGE_OFFER_PLAIN
    qr = (
        f'<div class="qr">{qr_svg(qr_url)}</div><p class="intro">{escape(copy.PAGE_SCAN)}</p>'
        if qr_url
        else f'<p class="intro">{escape(copy.PAGE_NO_QR)}</p>'
    )
    body = (
        f"<h1>{escape(copy.PAGE_HEADING.format(brand=brand))}</h1>"
        f'<section class="card"><p>{escape(offer)}</p>{qr}</section>'
    )
    return document(copy.PAGE_TITLE.format(brand=brand), body)


async def share_page(request: web.Request) -> web.Response:
    """The page behind a share link, or the same 404 page for any code that has none."""
    code = referral_code(request.match_info["code"])
    link = None
    if code is not None:
        async with request.config_dict[wiring.SESSIONS]() as session:
            link = await link_by_code(session, code)
    if link is None:
        title = copy.PAGE_NOT_FOUND_TITLE
        body = f'<h1>{escape(title)}</h1><p class="intro">{escape(copy.PAGE_NOT_FOUND)}</p>'
        return html_response(document(title, body), 404)
    live = link.qr_expires_at is not None and link.qr_expires_at > utcnow()
    rules = request.config_dict[wiring.CONFIG].programme
    return html_response(render_share_page(rules, link.qr_url if live else None), 200)


routes = [web.get("/r/{code}", share_page)]
