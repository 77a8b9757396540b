"""The console's pages and actions. Every route is guarded by ``requires`` (bot/console/auth.py)
and every staff action is written to the audit log in the transaction that does it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.console.auth import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSIONS,
    STAFF,
    check_password,
    client_address,
    csrf_matches,
    requires,
    template_context,
)
from bot.console.canned_views import rendered_for
from bot.console.sending import plan_template, send_in_window, template_ready
from bot.logs import mask_openid
from bot.wechat.cs_window import CustomerServiceWindows
from bot.wechat.handoff import Handoffs
from messages import console_copy, handoff_copy, service_copy
from models.base import utcnow
from models.cases import case_of_conversation
from models.conversations import (
    OPEN,
    Conversation,
    ConversationMessage,
    add_message,
    agent_report,
    claim,
    end,
    queue_order,
    transfer,
)
from models.deliveries import SERVICE, PlannedPush, plan
from models.members import Member
from models.orders import Order
from models.ratings import FollowUp, Rating, satisfaction_report
from models.staff import AuditEntry, Staff, audit, find_staff
from scheduler.rating_questions import plan_after_conversation

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")
HANDOFF_ENDED = "handoff_ended"


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


@routes.get("/login", name="login")
async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form, with a fresh double-submit CSRF token."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"csrf": token, "error": None, "staff": None}
    )
    _set_login_csrf(request, response, token)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the password (throttled); on success a new session and the console's home."""
    form = await request.post()
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not token or not csrf_matches(token, _field(form, "csrf")):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    username = _field(form, "username").strip()[:32]
    password = _field(form, "password")[:200]
    sessions = request.config_dict[SESSIONS]
    address = client_address(request, request.config_dict[wiring.CONFIG].console.trusted_proxies)
    now = utcnow()
    if await sessions.paused(username, address):
        return _login_error(request, token, console_copy.LOGIN_PAUSED, 429)
    async with _sessions(request).begin() as db:
        staff = await find_staff(db, username)
        ok, rehash = check_password(staff.password_hash if staff else None, password)
        if staff is None or not ok or staff.disabled:
            await audit(db, staff.id if staff else None, "login_failed", now, target=username)
            failed = True
        else:
            failed = False
            if rehash:
                staff.password_hash = rehash
            await audit(db, staff.id, "login", now, address=address)
    if failed or staff is None:
        await sessions.failed(username, address)
        return _login_error(request, token, console_copy.LOGIN_FAILED, 401)
    await sessions.succeeded(username)
    await sessions.end(request.cookies.get(COOKIE))
    session_token, _ = await sessions.start(staff.id, staff.username, staff.role)
    response = web.HTTPSeeOther(_home(staff.role))
    sessions.set_cookie(response, session_token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console")
    raise response


@routes.post("/logout")
@requires("agent", "marketer", "admin")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session; an agent goes offline."""
    staff = request[STAFF]
    async with _sessions(request).begin() as db:
        member = await db.get_one(Staff, staff.staff_id)
        member.availability = "offline"
        await audit(db, staff.staff_id, "logout", utcnow())
    sessions = request.config_dict[SESSIONS]
    await sessions.end(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/console/login")
    sessions.clear_cookie(response)
    raise response


@routes.get("/", name="home")
@requires("agent", "marketer", "admin")
async def home(request: web.Request) -> web.StreamResponse:
    """Agents start at the queue; marketers at the satisfaction figures."""
    staff = request[STAFF]
    if staff.role == "marketer":
        raise web.HTTPSeeOther("/console/reports/satisfaction")
    async with _sessions(request)() as db:
        me = await db.get_one(Staff, staff.staff_id)
    return aiohttp_jinja2.render_template(
        "queue.html",
        request,
        template_context(request, availability=me.availability, console=_console(request)),
    )


@routes.get("/api/queue")
@requires(*AGENTS)
async def queue_snapshot(request: web.Request) -> web.Response:
    """The open conversations, oldest first, for the live queue."""
    now = utcnow()
    console = _console(request)
    target = timedelta(minutes=console.pickup_target_minutes)
    async with _sessions(request)() as db:
        rows = (
            await db.execute(
                select(Conversation, Member.openid, Member.name, Member.tier, Staff.username)
                .join(Member, Member.id == Conversation.member_id)
                .outerjoin(Staff, Staff.id == Conversation.assigned_to)
                .where(Conversation.status.in_(OPEN))
                # Waiting ones first, in the order they will be served (models/conversations).
                .order_by(Conversation.status != "queued", *queue_order(console.priority))
                .limit(500)
            )
        ).all()
        agents = (
            await db.execute(
                select(Staff.username, Staff.availability)
                .where(Staff.role.in_(AGENTS), Staff.disabled.is_(False))
                .order_by(Staff.username)
            )
        ).all()
    rules = request.config_dict[wiring.CONFIG].programme
    return web.json_response(
        {
            "conversations": [
                {
                    "id": c.id,
                    "status": c.status,
                    "reason": c.reason,
                    "member": name or _masked(openid),
                    "tier": rules.tier(tier).name,
                    "priority": service_copy.PRIORITY_BADGE.format(tier=rules.tier(tier).name)
                    if console.priority.has_lane(tier)
                    else None,
                    "agent": agent,
                    "waiting_seconds": int((now - c.queued_at).total_seconds()),
                    "overdue": c.status == "queued" and now - c.queued_at > target,
                }
                for c, openid, name, tier, agent in rows
            ],
            "agents": [{"username": u, "availability": a} for u, a in agents],
        }
    )


@routes.post("/availability")
@requires(*AGENTS)
async def set_availability(request: web.Request) -> web.StreamResponse:
    """Online (gets conversations assigned) or away."""
    form = await request.post()
    value = _field(form, "availability")
    if value not in ("online", "away"):
        raise web.HTTPBadRequest(text="availability must be online or away")
    staff = request[STAFF]
    async with _sessions(request).begin() as db:
        me = await db.get_one(Staff, staff.staff_id)
        me.availability = value
        await audit(db, staff.staff_id, "availability", utcnow(), target=value)
    await _handoffs(request).publish("agents", 0)
    raise web.HTTPSeeOther("/console/")


@dataclass(frozen=True, slots=True)
class _Window:
    left: int
    closes_at: datetime | None


@routes.get("/conversations/{id:\\d+}", name="conversation")
@requires(*AGENTS)
async def conversation_page(request: web.Request) -> web.StreamResponse:
    """A conversation: history, the member card, the reply window, and the actions."""
    conversation_id = int(request.match_info["id"])
    async with _sessions(request)() as db:
        conversation = await db.get(Conversation, conversation_id)
        if conversation is None:
            raise web.HTTPNotFound(text="no such conversation")
        member = await db.get_one(Member, conversation.member_id)
        card = await _member_card(db, member)
        messages = await _messages(db, conversation_id, 0)
        colleagues = (
            await db.scalars(
                select(Staff)
                .where(
                    Staff.role.in_(AGENTS),
                    Staff.disabled.is_(False),
                    Staff.id != request[STAFF].staff_id,
                )
                .order_by(Staff.username)
            )
        ).all()
        assigned = (
            await db.get(Staff, conversation.assigned_to) if conversation.assigned_to else None
        )
        service_case = await case_of_conversation(db, conversation_id)
    window = await _window(request, member.openid)
    config = request.config_dict[wiring.CONFIG]
    return aiohttp_jinja2.render_template(
        "conversation.html",
        request,
        template_context(
            request,
            conversation=conversation,
            assigned=assigned,
            member=member,
            masked_openid=_masked(member.openid),
            card=card,
            messages=messages,
            window=window,
            colleagues=colleagues,
            canned=await rendered_for(request, member),
            segment_names=console_copy.SEGMENT_NAMES,
            template_ready=template_ready(request),
            case=service_case,
            case_categories=service_copy.CASE_CATEGORIES,
            rules=config.programme,
            zone=config.programme.zone,
        ),
    )


@routes.get("/api/conversations/{id:\\d+}")
@requires(*AGENTS)
async def conversation_updates(request: web.Request) -> web.Response:
    """Messages after ``after`` (an id), the status and the reply window, for the live page."""
    conversation_id = int(request.match_info["id"])
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="after must be a message id") from None
    async with _sessions(request)() as db:
        conversation = await db.get(Conversation, conversation_id)
        if conversation is None:
            raise web.HTTPNotFound(text="no such conversation")
        member = await db.get_one(Member, conversation.member_id)
        messages = await _messages(db, conversation_id, after)
    window = await _window(request, member.openid)
    zone = request.config_dict[wiring.CONFIG].programme.zone
    return web.json_response(
        {
            "status": conversation.status,
            "window": {
                "left": window.left,
                "closes_at": window.closes_at.astimezone(zone).strftime("%m-%d %H:%M")
                if window.closes_at
                else None,
            },
            "messages": [
                {
                    "id": m.id,
                    "direction": m.direction,
                    "kind": m.kind,
                    "content": m.content,
                    "media_id": m.media_id,
                    "staff": name,
                    "at": m.created_at.astimezone(zone).strftime("%m-%d %H:%M:%S"),
                }
                for m, name in messages
            ],
        }
    )


@routes.post("/conversations/{id:\\d+}/claim")
@requires(*AGENTS)
async def claim_conversation(request: web.Request) -> web.StreamResponse:
    """Take a queued conversation."""
    conversation_id = int(request.match_info["id"])
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        if not await claim(db, conversation_id, staff.staff_id, now):
            raise web.HTTPConflict(text=console_copy.ALREADY_TAKEN)
        await _record(db, conversation_id, staff.staff_id, "claim", now, "event", content="claimed")
    await _handoffs(request).publish("assigned", conversation_id, agent=staff.username)
    return _back(conversation_id)


@routes.post("/conversations/{id:\\d+}/reply")
@requires(*AGENTS)
async def reply(request: web.Request) -> web.StreamResponse:
    """Send the agent's text as a customer-service message, inside the member's window."""
    conversation_id = int(request.match_info["id"])
    text = _field(await request.post(), "text").strip()
    if not text or len(text) > 2000:
        raise web.HTTPBadRequest(text=console_copy.REPLY_LENGTH)
    staff = request[STAFF]
    async with _sessions(request)() as db:
        _, openid = await _mine(db, conversation_id, staff.staff_id)
    if not await send_in_window(request, openid, text):
        raise web.HTTPConflict(text=console_copy.WINDOW_CLOSED)
    now = utcnow()
    async with _sessions(request).begin() as db:
        message = await _record(
            db, conversation_id, staff.staff_id, "reply", now, "out", content=text
        )
    await _handoffs(request).publish("message", conversation_id, id=message.id, direction="out")
    return _back(conversation_id)


@routes.post("/conversations/{id:\\d+}/template")
@requires(*AGENTS)
async def reply_by_template(request: web.Request) -> web.StreamResponse:
    """The window has closed: the answer goes as the configured service template message."""
    conversation_id = int(request.match_info["id"])
    text = _field(await request.post(), "text").strip()
    if not text or len(text) > 200:
        raise web.HTTPBadRequest(text=console_copy.TEMPLATE_LENGTH)
    if not template_ready(request):
        raise web.HTTPConflict(text=console_copy.NO_TEMPLATE)
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        # Checked in the transaction that writes: a transfer meanwhile refuses the send.
        conversation, _ = await _mine(db, conversation_id, staff.staff_id)
        message = await _record(
            db,
            conversation_id,
            staff.staff_id,
            "reply_template",
            now,
            "out",
            kind="template",
            content=text,
        )
        ids = await plan_template(db, conversation.member_id, str(message.id), text, now)
    await request.config_dict[wiring.OUTBOX].enqueue(ids)
    await _handoffs(request).publish("message", conversation_id, id=message.id, direction="out")
    return _back(conversation_id)


@routes.post("/conversations/{id:\\d+}/note")
@requires(*AGENTS)
async def note(request: web.Request) -> web.StreamResponse:
    """A private note: staff see it, the member never does."""
    conversation_id = int(request.match_info["id"])
    text = _field(await request.post(), "text").strip()
    if not text or len(text) > 2000:
        raise web.HTTPBadRequest(text=console_copy.REPLY_LENGTH)
    staff = request[STAFF]
    async with _sessions(request).begin() as db:
        message = await _record(
            db, conversation_id, staff.staff_id, "note", utcnow(), "note", content=text
        )
    await _handoffs(request).publish("message", conversation_id, id=message.id, direction="note")
    return _back(conversation_id)


@routes.post("/conversations/{id:\\d+}/transfer")
@requires(*AGENTS)
async def transfer_conversation(request: web.Request) -> web.StreamResponse:
    """Give the conversation to a colleague."""
    conversation_id = int(request.match_info["id"])
    to_name = _field(await request.post(), "to")
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        colleague = await find_staff(db, to_name)
        if colleague is None or colleague.disabled or colleague.role not in AGENTS:
            raise web.HTTPBadRequest(text=console_copy.NO_SUCH_AGENT)
        if not await transfer(db, conversation_id, staff.staff_id, colleague.id, now):
            raise web.HTTPConflict(text=console_copy.NOT_YOURS)
        await _record(
            db,
            conversation_id,
            staff.staff_id,
            "transfer",
            now,
            "event",
            content=f"transferred:{to_name}",
        )
    await _handoffs(request).publish("assigned", conversation_id, agent=to_name)
    raise web.HTTPSeeOther("/console/")


@routes.post("/conversations/{id:\\d+}/close")
@requires(*AGENTS)
async def close(request: web.Request) -> web.StreamResponse:
    """Resolved: the member goes back to the bot and gets the rating question."""
    return await _finish(request, "closed")


@routes.post("/conversations/{id:\\d+}/handback")
@requires(*AGENTS)
async def hand_back(request: web.Request) -> web.StreamResponse:
    """Back to the bot without a rating (nothing to resolve, or handled elsewhere)."""
    return await _finish(request, "handed_back")


async def _finish(request: web.Request, outcome: str) -> web.StreamResponse:
    conversation_id = int(request.match_info["id"])
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        _, openid = await _mine(db, conversation_id, staff.staff_id)
        member_id = await end(db, conversation_id, outcome, now, staff.staff_id)
        if member_id is None:
            raise web.HTTPConflict(text=console_copy.ALREADY_ENDED)
        push = PlannedPush(
            member_id, f"{HANDOFF_ENDED}:{conversation_id}", {"text": handoff_copy.ENDED}
        )
        ids = await plan(db, HANDOFF_ENDED, SERVICE, [push], now)
        if outcome == "closed":
            ids += await plan_after_conversation(db, member_id, str(conversation_id), now)
        await audit(db, staff.staff_id, outcome, now, target=str(conversation_id))
    handoffs = _handoffs(request)
    await handoffs.finish(openid)
    # The farewell first, then the question: the outbox sends in the order it is given.
    await request.config_dict[wiring.OUTBOX].enqueue(ids)
    await handoffs.publish("ended", conversation_id, outcome=outcome)
    raise web.HTTPSeeOther("/console/")


@routes.get("/reports/agents")
@requires(*AGENTS)
async def agents_report(request: web.Request) -> web.StreamResponse:
    """First-response and resolution times per agent and day, the last 14 local days."""
    zone = request.config_dict[wiring.CONFIG].programme.zone
    today = utcnow().astimezone(zone).date()
    start = datetime.combine(today - timedelta(days=13), time.min, zone)
    end_at = datetime.combine(today + timedelta(days=1), time.min, zone)
    async with _sessions(request)() as db:
        rows = await agent_report(db, start, end_at)
    return aiohttp_jinja2.render_template(
        "agents_report.html", request, template_context(request, rows=rows)
    )


@routes.get("/reports/satisfaction")
@requires("marketer", "admin")
async def satisfaction_page(request: web.Request) -> web.StreamResponse:
    """CSAT and NPS by tier, this month and the last 90 days."""
    rules = request.config_dict[wiring.CONFIG].programme
    zone = rules.zone
    today = utcnow().astimezone(zone).date()
    end_at = datetime.combine(today + timedelta(days=1), time.min, zone)
    start = datetime.combine(today - timedelta(days=89), time.min, zone)
    async with _sessions(request)() as db:
        by_tier = await satisfaction_report(db, start, end_at, "tier")
        by_month = await satisfaction_report(db, start, end_at, "month")
    names = {tier.code: tier.name for tier in rules.tiers}
    return aiohttp_jinja2.render_template(
        "satisfaction.html",
        request,
        template_context(request, by_tier=by_tier, by_month=by_month, names=names),
    )


@routes.get("/audit")
@requires("admin")
async def audit_page(request: web.Request) -> web.StreamResponse:
    """The latest staff actions."""
    zone = request.config_dict[wiring.CONFIG].programme.zone
    async with _sessions(request)() as db:
        rows = (
            await db.execute(
                select(AuditEntry, Staff.username)
                .outerjoin(Staff, Staff.id == AuditEntry.staff_id)
                .order_by(AuditEntry.id.desc())
                .limit(200)
            )
        ).all()
    return aiohttp_jinja2.render_template(
        "audit.html", request, template_context(request, rows=rows, zone=zone)
    )


@dataclass(frozen=True, slots=True)
class _Card:
    orders: list[Order]
    ratings: list[Rating]
    follow_ups: list[FollowUp]


async def _member_card(db: AsyncSession, member: Member) -> _Card:
    orders = (
        await db.scalars(
            select(Order)
            .where(Order.member_id == member.id)
            .order_by(Order.paid_at.desc())
            .limit(5)
        )
    ).all()
    ratings = (
        await db.scalars(
            select(Rating)
            .where(Rating.member_id == member.id)
            .order_by(Rating.answered_at.desc())
            .limit(5)
        )
    ).all()
    follow_ups = (
        await db.scalars(
            select(FollowUp)
            .where(FollowUp.member_id == member.id, FollowUp.status == "open")
            .order_by(FollowUp.id)
        )
    ).all()
    return _Card(list(orders), list(ratings), list(follow_ups))


async def _messages(
    db: AsyncSession, conversation_id: int, after: int
) -> list[tuple[ConversationMessage, str | None]]:
    rows = await db.execute(
        select(ConversationMessage, Staff.username)
        .outerjoin(Staff, Staff.id == ConversationMessage.staff_id)
        .where(
            ConversationMessage.conversation_id == conversation_id,
            ConversationMessage.id > after,
        )
        .order_by(ConversationMessage.id)
        .limit(500)
    )
    return [(message, name) for message, name in rows]


async def _mine(db: AsyncSession, conversation_id: int, staff_id: int) -> tuple[Conversation, str]:
    """The conversation, locked, if it is open and assigned to this agent; its member's openid."""
    row = (
        await db.execute(
            select(Conversation, Member.openid)
            .join(Member, Member.id == Conversation.member_id)
            .where(Conversation.id == conversation_id)
            .with_for_update(of=Conversation)
        )
    ).first()
    if row is None:
        raise web.HTTPNotFound(text="no such conversation")
    conversation, openid = row
    if conversation.status not in OPEN:
        raise web.HTTPConflict(text=console_copy.ALREADY_ENDED)
    if conversation.assigned_to != staff_id or openid is None:
        raise web.HTTPConflict(text=console_copy.NOT_YOURS)
    return conversation, openid


async def _record(
    db: AsyncSession,
    conversation_id: int,
    staff_id: int,
    action: str,
    now: datetime,
    direction: str,
    **message: str,
) -> ConversationMessage:
    """What a staff action leaves behind: its line in the conversation and in the audit log."""
    conversation = await db.get(Conversation, conversation_id)
    if conversation is None:
        raise web.HTTPNotFound(text="no such conversation")
    written = await add_message(db, conversation, direction, now, staff_id=staff_id, **message)
    await audit(db, staff_id, action, now, target=str(conversation_id))
    return written


async def _window(request: web.Request, openid: str | None) -> _Window:
    if openid is None:
        return _Window(0, None)
    left, seconds = await CustomerServiceWindows(request.config_dict[wiring.REDIS]).state(openid)
    closes = utcnow() + timedelta(seconds=seconds) if seconds is not None else None
    return _Window(left if closes else 0, closes)


def _handoffs(request: web.Request) -> Handoffs:
    return Handoffs(request.config_dict[wiring.REDIS])


def _console(request: web.Request) -> Any:
    return request.config_dict[wiring.CONFIG].console


def _home(role: str) -> str:
    return "/console/reports/satisfaction" if role == "marketer" else "/console/"


def _back(conversation_id: int) -> web.StreamResponse:
    """After a form post, back to the conversation page."""
    raise web.HTTPSeeOther(f"/console/conversations/{conversation_id}")


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _masked(openid: str | None) -> str:
    return mask_openid(openid) if openid else "…"


def _set_login_csrf(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.config_dict[SESSIONS].secure,
    )


def _login_error(request: web.Request, token: str, error: str, status: int) -> web.StreamResponse:
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"csrf": token, "error": error, "staff": None}, status=status
    )
    _set_login_csrf(request, response, token)
    return response
