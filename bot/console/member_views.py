"""Member search and the member card, outside a conversation (agents and admins; marketers
never see a member's card).

Search by openid, name, binding code, shop order id or phone: agents by its last 4 digits and
see numbers masked, admins also by the whole number and see it whole (``PHONE_ROLES``). The
card: points and the lots they sit in with expiry, coupons, the ledger's latest entries, tier
history, referrals, ratings, conversations, follow-ups and cases."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.console.report_views import PHONE_ROLES, mask_phone
from bot.logs import mask_openid
from messages import console_copy, cs_tools_copy, service_copy
from models.base import utcnow
from models.cases import list_cases
from models.compensations import COUPON, CompensationRefused, DailyLimit, compensate
from models.ledger import EXPIRING_HORIZON, InsufficientPoints
from models.member_card import expiring_points, member_card, search_members
from models.members import Member
from models.staff import audit

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")
# A compensation form's one-time key (made when the card is shown): a double submit reuses it.
_FORM_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DONE = {"given": cs_tools_copy.COMPENSATION_DONE, "replayed": cs_tools_copy.DOUBLE_SUBMIT}


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
        cases = await list_cases(db, now, state="all", member_id=member_id, limit=20)
    compensation = config.console.compensation
    return aiohttp_jinja2.render_template(
        "member.html",
        request,
        template_context(
            request,
            card=card,
            cases=cases,
            case_categories=service_copy.CASE_CATEGORIES,
            case_statuses=service_copy.CASE_STATUSES,
            member=card.member,
            expiring=expiring,
            rules=config.programme,
            zone=config.programme.zone,
            now=now,
            soon=now + timedelta(days=30),
            compensation=compensation,
            coupon_kind=config.programme.coupon_kind(compensation.coupon_kind),
            may_compensate=compensation.limit_for(staff.role) is not None,
            form_key=secrets.token_urlsafe(16),
            done=_DONE.get(request.query.get("done", "")),
            segment_names=console_copy.SEGMENT_NAMES,
            **shown(staff.role),
            **({"form_error": None, "form_done": None} | extra),
        ),
        status=status,
    )


@routes.post("/members/{id:\\d+}/compensate")
@requires(*AGENTS)
async def compensate_member(request: web.Request) -> web.StreamResponse:
    """Give the member the compensation coupon or points, within the role's daily limits;
    audited. The form's one-time key makes a second submit of the same form give nothing."""
    member_id = int(request.match_info["id"])
    form = await request.post()
    staff = request[STAFF]
    config = request.config_dict[wiring.CONFIG]
    settings = config.console.compensation
    limit = settings.limit_for(staff.role)
    if limit is None:
        raise web.HTTPForbidden(text=cs_tools_copy.COMPENSATION_NOT_ALLOWED)
    what = _field(form, "what")
    reason = _field(form, "reason").strip()
    key = _field(form, "key")
    problem = None
    points = 0
    if not _FORM_KEY.match(key):
        problem = cs_tools_copy.COMPENSATION_FORM_KEY
    elif not 1 <= len(reason) <= 200:
        problem = cs_tools_copy.COMPENSATION_REASON
    elif what == COUPON:
        if not settings.coupon_kind:
            problem = cs_tools_copy.COMPENSATION_NO_COUPON
    else:
        cap = config.programme.points.max_adjustment
        try:
            points = int(_field(form, "points"))
        except ValueError:
            points = 0
        if points == 0 or abs(points) > cap:
            problem = cs_tools_copy.COMPENSATION_POINTS.format(limit=cap)
    if problem:
        return await render_card(request, member_id, 400, form_error=problem)
    rules = config.programme
    now = utcnow()
    local_day = now.astimezone(rules.zone).date()
    try:
        async with _sessions(request).begin() as db:
            if await db.get(Member, member_id) is None:
                raise web.HTTPNotFound(text="no such member")
            given = await compensate(
                db,
                rules,
                staff_id=staff.staff_id,
                member_id=member_id,
                coupon_kind=settings.coupon_kind if what == COUPON else None,
                points=points,
                reason=reason,
                ledger_reason=cs_tools_copy.LEDGER_COMPENSATION
                if points > 0
                else cs_tools_copy.LEDGER_CORRECTION,
                key=f"console:{staff.staff_id}:{key}",
                limit=DailyLimit(limit.coupons, limit.points),
                day_start=datetime.combine(local_day, time.min, rules.zone),
                now=now,
            )
            if not given.replayed:
                await audit(
                    db,
                    staff.staff_id,
                    f"compensate_{given.compensation.kind}",
                    now,
                    target=f"member:{member_id}",
                    points=points,
                    coupon_id=given.compensation.coupon_id,
                    reason=reason,
                )
    except CompensationRefused as exc:
        what_name = (
            cs_tools_copy.COMPENSATION_COUPONS
            if exc.reason == "coupons"
            else cs_tools_copy.COMPENSATION_POINTS_NAME
        )
        error = (
            cs_tools_copy.DOUBLE_SUBMIT
            if exc.reason == "conflict"
            else cs_tools_copy.COMPENSATION_LIMIT.format(what=what_name)
        )
        return await render_card(request, member_id, 409, form_error=error)
    except InsufficientPoints as exc:
        error = cs_tools_copy.INSUFFICIENT_POINTS.format(points=exc.wanted, balance=exc.balance)
        return await render_card(request, member_id, 409, form_error=error)
    done = "replayed" if given.replayed else "given"
    raise web.HTTPSeeOther(f"/console/members/{member_id}?done={done}")


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
