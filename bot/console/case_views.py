"""Cases (工单) in the console, and the service figures page. An agent opens a case from a
conversation; on the case page they write to the member later (a customer-service message
while the 48-hour window is open, else the ``service_reply`` template: bot/console/sending.py),
change it, take it over, close it with an outcome and reopen it. Every action is audited in
the transaction that does it (models/cases.py keeps the case's own history)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.console.sending import plan_template, send_in_window, template_ready
from bot.logs import mask_openid
from bot.wechat.cs_window import CustomerServiceWindows
from messages import console_copy, service_copy
from models.base import utcnow
from models.cases import (
    CATEGORIES,
    STATES,
    CaseEntry,
    ServiceCase,
    add_entry,
    close_case,
    default_due,
    list_cases,
    open_case,
    reopen_case,
    take_case,
    update_case,
)
from models.conversations import Conversation, ConversationMessage, open_conversation_of
from models.members import Member
from models.service_figures import service_figures
from models.staff import Staff, audit

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")
TEMPLATE_MAX = 200
TEXT_MAX = 2000


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _zone(request: web.Request) -> Any:
    return request.config_dict[wiring.CONFIG].programme.zone


def _due(request: web.Request, raw: str, now: datetime) -> datetime | None:
    """A due time typed in the form (local, ``YYYY-MM-DDTHH:MM``); None when left empty."""
    if not raw.strip():
        return None
    try:
        local = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise web.HTTPBadRequest(text=service_copy.CASE_BAD_DUE) from None
    due = local.replace(tzinfo=_zone(request)) if local.tzinfo is None else local
    if due <= now:
        raise web.HTTPBadRequest(text=service_copy.CASE_BAD_DUE)
    return due


def _category(form: Any) -> str:
    category = _field(form, "category")
    if category not in CATEGORIES:
        raise web.HTTPBadRequest(text=service_copy.CASE_BAD_CATEGORY)
    return category


def _notes(form: Any) -> str:
    notes = _field(form, "notes").strip()
    if len(notes) > TEXT_MAX:
        raise web.HTTPBadRequest(text=service_copy.CASE_NOTES_LENGTH)
    return notes


def _to_case(case_id: int) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"/console/cases/{case_id}")


async def _case(db: AsyncSession, case_id: int, *, lock: bool = False) -> ServiceCase:
    query = select(ServiceCase).where(ServiceCase.id == case_id)
    found = await db.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise web.HTTPNotFound(text=service_copy.CASE_NOT_FOUND)
    return found


@routes.get("/cases", name="cases")
@requires(*AGENTS)
async def cases_page(request: web.Request) -> web.StreamResponse:
    """Cases, overdue first; filters: state (open, overdue, closed, all), mine, category."""
    state = request.query.get("state", "open")
    category = request.query.get("category", "") or None
    mine = request.query.get("mine") == "1"
    if state not in STATES or (category is not None and category not in CATEGORIES):
        raise web.HTTPBadRequest(text=service_copy.CASE_BAD_FILTER)
    staff = request[STAFF]
    async with _sessions(request)() as db:
        rows = await list_cases(
            db,
            utcnow(),
            state=state,
            owner_id=staff.staff_id if mine else None,
            category=category,
        )
    return aiohttp_jinja2.render_template(
        "cases.html",
        request,
        template_context(
            request,
            rows=rows,
            state=state,
            category=category or "",
            mine=mine,
            categories=service_copy.CASE_CATEGORIES,
            statuses=service_copy.CASE_STATUSES,
            masked=lambda openid: mask_openid(openid) if openid else "…",
            zone=_zone(request),
        ),
    )


@routes.post("/cases")
@requires(*AGENTS)
async def create_case(request: web.Request) -> web.StreamResponse:
    """Turn a conversation into a case (one per conversation: a second try opens the first)."""
    form = await request.post()
    try:
        conversation_id = int(_field(form, "conversation"))
    except ValueError:
        raise web.HTTPBadRequest(text="conversation must be a conversation id") from None
    category, notes = _category(form), _notes(form)
    staff = request[STAFF]
    now = utcnow()
    due = _due(request, _field(form, "due"), now)
    hours = request.config_dict[wiring.CONFIG].programme.targets.resolve_hours
    async with _sessions(request).begin() as db:
        conversation = await db.get(Conversation, conversation_id)
        if conversation is None:
            raise web.HTTPNotFound(text="no such conversation")
        due = due or await default_due(db, conversation, hours)
        made = await open_case(db, conversation, staff.staff_id, category, notes, due, now)
        if made is None:
            raise web.HTTPConflict(text=service_copy.CASE_EXISTS)
        await audit(db, staff.staff_id, "case_open", now, target=f"case:{made.id}")
    return _to_case(made.id)


@routes.get("/cases/{id:\\d+}", name="case")
@requires(*AGENTS)
async def case_page(request: web.Request) -> web.StreamResponse:
    """A case: what was promised, its history, the conversation it came from, and the forms."""
    case_id = int(request.match_info["id"])
    now = utcnow()
    async with _sessions(request)() as db:
        found = await _case(db, case_id)
        member = await db.get_one(Member, found.member_id)
        entries = (
            await db.execute(
                select(CaseEntry, Staff.username)
                .outerjoin(Staff, Staff.id == CaseEntry.staff_id)
                .where(CaseEntry.case_id == case_id)
                .order_by(CaseEntry.id)
            )
        ).all()
        transcript = (
            await db.execute(
                select(ConversationMessage, Staff.username)
                .outerjoin(Staff, Staff.id == ConversationMessage.staff_id)
                .where(ConversationMessage.conversation_id == found.conversation_id)
                .order_by(ConversationMessage.id)
                .limit(500)
            )
        ).all()
        owner = await db.get_one(Staff, found.owner_id)
        current = await open_conversation_of(db, found.member_id)
    left, seconds = 0, None
    if member.openid:
        windows = CustomerServiceWindows(request.config_dict[wiring.REDIS])
        left, seconds = await windows.state(member.openid)
    closes_at = now + timedelta(seconds=seconds) if seconds is not None and left else None
    rules = request.config_dict[wiring.CONFIG].programme
    return aiohttp_jinja2.render_template(
        "case.html",
        request,
        template_context(
            request,
            case=found,
            overdue=found.status == "open" and found.due_at < now,
            member=member,
            member_label=member.name or (mask_openid(member.openid) if member.openid else "…"),
            tier=rules.tier(member.tier).name,
            owner=owner.username,
            entries=entries,
            transcript=transcript,
            current=current,
            window_left=left,
            window_closes=closes_at,
            template_ready=template_ready(request),
            categories=service_copy.CASE_CATEGORIES,
            statuses=service_copy.CASE_STATUSES,
            kinds=service_copy.CASE_ENTRY_KINDS,
            zone=rules.zone,
        ),
    )


@routes.post("/cases/{id:\\d+}/write")
@requires(*AGENTS)
async def write_to_member(request: web.Request) -> web.StreamResponse:
    """Write to the member about the case: a customer-service message while the window is
    open, else the ``service_reply`` template message; a clear refusal when neither can go."""
    case_id = int(request.match_info["id"])
    text = _field(await request.post(), "text").strip()
    if not text or len(text) > TEXT_MAX:
        raise web.HTTPBadRequest(text=console_copy.REPLY_LENGTH)
    staff = request[STAFF]
    async with _sessions(request)() as db:
        found = await _case(db, case_id)
        if found.status != "open":
            raise web.HTTPConflict(text=service_copy.CASE_CLOSED)
        openid = await db.scalar(select(Member.openid).where(Member.id == found.member_id))
    if openid is not None and await send_in_window(request, openid, text):
        kind = "message"
    elif not template_ready(request):
        raise web.HTTPConflict(text=service_copy.CASE_NO_WAY)
    elif len(text) > TEMPLATE_MAX:
        raise web.HTTPBadRequest(text=service_copy.CASE_TOO_LONG_FOR_TEMPLATE)
    else:
        kind = "template"
    now = utcnow()
    ids: list[int] = []
    async with _sessions(request).begin() as db:
        entry = await add_entry(db, case_id, kind, now, staff.staff_id, text)
        if kind == "template":
            ids = await plan_template(db, found.member_id, f"case{case_id}:{entry.id}", text, now)
        await audit(db, staff.staff_id, "case_write", now, target=f"case:{case_id}", via=kind)
    if ids:
        await request.config_dict[wiring.OUTBOX].enqueue(ids)
    return _to_case(case_id)


@routes.post("/cases/{id:\\d+}/update")
@requires(*AGENTS)
async def change_case(request: web.Request) -> web.StreamResponse:
    """Change an open case's category, due time or notes."""
    case_id = int(request.match_info["id"])
    form = await request.post()
    category, notes = _category(form), _notes(form)
    staff = request[STAFF]
    now = utcnow()
    due = _due(request, _field(form, "due"), now)
    async with _sessions(request).begin() as db:
        found = await _case(db, case_id, lock=True)
        if found.status != "open":
            raise web.HTTPConflict(text=service_copy.CASE_CLOSED)
        changed = await update_case(
            db,
            found,
            staff.staff_id,
            now,
            category=category,
            notes=notes,
            due_at=due or found.due_at,
        )
        if changed:
            await audit(
                db, staff.staff_id, "case_update", now, target=f"case:{case_id}", fields=changed
            )
    return _to_case(case_id)


@routes.post("/cases/{id:\\d+}/take")
@requires(*AGENTS)
async def take(request: web.Request) -> web.StreamResponse:
    """Become the case's owner."""
    case_id = int(request.match_info["id"])
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        await _case(db, case_id)
        if await take_case(db, case_id, staff.staff_id, now):
            await audit(db, staff.staff_id, "case_take", now, target=f"case:{case_id}")
    return _to_case(case_id)


@routes.post("/cases/{id:\\d+}/close")
@requires(*AGENTS)
async def close(request: web.Request) -> web.StreamResponse:
    """Close the case with its outcome."""
    case_id = int(request.match_info["id"])
    outcome = _field(await request.post(), "outcome").strip()
    if not outcome or len(outcome) > 500:
        raise web.HTTPBadRequest(text=service_copy.CASE_OUTCOME_LENGTH)
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        await _case(db, case_id)
        if not await close_case(db, case_id, staff.staff_id, outcome, now):
            raise web.HTTPConflict(text=service_copy.CASE_CLOSED)
        await audit(db, staff.staff_id, "case_close", now, target=f"case:{case_id}")
    return _to_case(case_id)


@routes.post("/cases/{id:\\d+}/reopen")
@requires(*AGENTS)
async def reopen(request: web.Request) -> web.StreamResponse:
    """Open a closed case again, with the reason and, if given, a new due time."""
    case_id = int(request.match_info["id"])
    form = await request.post()
    reason = _field(form, "reason").strip()
    if not reason or len(reason) > 500:
        raise web.HTTPBadRequest(text=service_copy.CASE_REASON_LENGTH)
    staff = request[STAFF]
    now = utcnow()
    due = _due(request, _field(form, "due"), now)
    async with _sessions(request).begin() as db:
        await _case(db, case_id)
        if not await reopen_case(db, case_id, staff.staff_id, reason, now, due):
            raise web.HTTPConflict(text=service_copy.CASE_OPEN_ALREADY)
        await audit(db, staff.staff_id, "case_reopen", now, target=f"case:{case_id}")
    return _to_case(case_id)


@routes.get("/reports/service")
@requires("agent", "marketer", "admin")
async def service_page(request: web.Request) -> web.StreamResponse:
    """Service figures over the last ``days`` local days (30 by default): pickup within
    target, cases resolved within due, cases by category, backlog, per agent."""
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        raise web.HTTPBadRequest(text=service_copy.SERVICE_BAD_DAYS) from None
    if not 1 <= days <= 366:
        raise web.HTTPBadRequest(text=service_copy.SERVICE_BAD_DAYS)
    config = request.config_dict[wiring.CONFIG]
    zone = config.programme.zone
    now = utcnow()
    today = now.astimezone(zone).date()
    start = datetime.combine(today - timedelta(days=days - 1), time.min, zone)
    pickup = config.programme.targets.pickup_minutes
    async with _sessions(request)() as db:
        figures = await service_figures(db, start, now, now, pickup)
    return aiohttp_jinja2.render_template(
        "service_report.html",
        request,
        template_context(
            request,
            figures=figures,
            days=days,
            pickup_minutes=pickup,
            categories=service_copy.CASE_CATEGORIES,
            start=start,
        ),
    )
