"""Member search and the member card, outside a conversation (agents and admins; marketers
never see a member's card).

Search by openid, name, binding code, shop order id or phone: agents by its last 4 digits and
see numbers masked, admins also by the whole number and see it whole (``PHONE_ROLES``). The
card: points and the lots they sit in with expiry, coupons, the ledger's latest entries, tier
history, referrals, ratings, conversations, follow-ups, and where the cases will go."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.console.report_views import PHONE_ROLES, mask_phone
from bot.logs import mask_openid
from messages import cs_tools_copy
from models.base import utcnow
from models.ledger import EXPIRING_HORIZON
from models.member_card import expiring_points, member_card, search_members
from models.members import Member

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


def shown(role: str) -> dict[str, Any]:
    """How this role sees a member's phone number and openid."""
    whole = role in PHONE_ROLES

    def phone(member: Member) -> str:
        return (member.phone or "") if whole else mask_phone(member.phone)

    def openid(member: Member) -> str:
        if not member.openid:
            return "—"
        return member.openid if whole else mask_openid(member.openid)

    return {"phone_of": phone, "openid_of": openid}


@routes.get("/members")
@requires(*AGENTS)
async def search_page(request: web.Request) -> web.StreamResponse:
    """The search box and, for ``?q=``, the members it finds."""
    query = request.query.get("q", "").strip()
    error = None
    found: list[Member] = []
    staff = request[STAFF]
    if query:
        if len(query) > 64:
            error = cs_tools_copy.QUERY_LENGTH
        else:
            async with _sessions(request)() as db:
                found = await search_members(db, query, full_phone=staff.role in PHONE_ROLES)
    rules = request.config_dict[wiring.CONFIG].programme
    return aiohttp_jinja2.render_template(
        "members.html",
        request,
        template_context(
            request, query=query, found=found, error=error, rules=rules, **shown(staff.role)
        ),
        status=400 if error else 200,
    )


@routes.get("/members/{id:\\d+}")
@requires(*AGENTS)
async def card_page(request: web.Request) -> web.StreamResponse:
    """A member's card, with the compensation forms for the roles that may compensate."""
    return await render_card(request, int(request.match_info["id"]))


async def render_card(
    request: web.Request, member_id: int, status: int = 200, **extra: Any
) -> web.StreamResponse:
    """The member card page (also re-rendered with a form's error or result)."""
    staff = request[STAFF]
    now = utcnow()
    config = request.config_dict[wiring.CONFIG]
    async with _sessions(request)() as db:
        card = await member_card(db, member_id)
        if card is None:
            raise web.HTTPNotFound(text="no such member")
        expiring = await expiring_points(db, member_id, now + EXPIRING_HORIZON)
    compensation = config.console.compensation
    return aiohttp_jinja2.render_template(
        "member.html",
        request,
        template_context(
            request,
            card=card,
            member=card.member,
            expiring=expiring,
            rules=config.programme,
            zone=config.programme.zone,
            now=now,
            soon=now + timedelta(days=30),
            compensation=compensation,
            coupon_kind=config.programme.coupon_kind(compensation.coupon_kind),
            may_compensate=compensation.limit_for(staff.role) is not None,
            **shown(staff.role),
            **({"form_error": None, "form_done": None} | extra),
        ),
        status=status,
    )
