"""Customer service's work list (agents and admins): low-rating follow-ups and the planned
calls (models/follow_ups.py), filtered by mine, overdue and purpose; a follow-up's page with
its attempts (接通 / 未接通) and its outcome. Every action is audited in its transaction.

The member's full phone number is shown on a follow-up's page to the agent it is assigned to
(they are to call it) and to admins; anyone else sees it masked until they take the task."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.console.report_views import mask_phone
from bot.logs import mask_openid
from messages import cs_tools_copy
from models.base import utcnow
from models.follow_ups import (
    OUTCOMES,
    PURPOSES,
    FollowUpRefused,
    assign,
    attempts_of,
    close_follow_up,
    record_attempt,
    service_rates,
    work_list,
)
from models.members import Member
from models.ratings import FollowUp
from models.staff import Staff, audit, find_staff

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


@routes.get("/follow-ups")
@requires(*AGENTS)
async def work_list_page(request: web.Request) -> web.StreamResponse:
    """The work list: open (or closed) follow-ups with the filters, and this month's rates."""
    query = request.query
    status = "closed" if query.get("status") == "closed" else "open"
    purpose = query.get("purpose") if query.get("purpose") in PURPOSES else None
    mine, overdue = query.get("mine") == "1", query.get("overdue") == "1"
    staff = request[STAFF]
    rules = request.config_dict[wiring.CONFIG].programme
    now = utcnow()
    local = now.astimezone(rules.zone)
    month_start = datetime.combine(local.date().replace(day=1), time.min, rules.zone)
    async with _sessions(request)() as db:
        items = await work_list(
            db,
            status=status,
            assigned_to=staff.staff_id if mine else None,
            overdue_at=now if overdue else None,
            purpose=purpose,
        )
        rates = await service_rates(db, month_start, now)
    return aiohttp_jinja2.render_template(
        "follow_ups.html",
        request,
        template_context(
            request,
            items=items,
            rates=rates,
            filters={"status": status, "purpose": purpose, "mine": mine, "overdue": overdue},
            purposes=PURPOSES,
            now=now,
            zone=rules.zone,
            rules=rules,
            masked=_masked,
        ),
    )


@routes.get("/follow-ups/{id:\\d+}")
@requires(*AGENTS)
async def follow_up_page(request: web.Request) -> web.StreamResponse:
    """One follow-up: the member, what it is about, its attempts, and the forms to work it."""
    follow_up_id = int(request.match_info["id"])
    staff = request[STAFF]
    async with _sessions(request)() as db:
        follow_up = await db.get(FollowUp, follow_up_id)
        if follow_up is None:
            raise web.HTTPNotFound(text=cs_tools_copy.FOLLOW_UP_REFUSED["missing"])
        member = await db.get_one(Member, follow_up.member_id)
        attempts = await attempts_of(db, follow_up_id)
        assignee = await db.get(Staff, follow_up.assigned_to) if follow_up.assigned_to else None
        agents = (
            (
                await db.scalars(
                    select(Staff)
                    .where(Staff.role.in_(AGENTS), Staff.disabled.is_(False))
                    .order_by(Staff.username)
                )
            ).all()
            if staff.role == "admin"
            else []
        )
    rules = request.config_dict[wiring.CONFIG].programme
    sees_phone = staff.role == "admin" or follow_up.assigned_to == staff.staff_id
    return aiohttp_jinja2.render_template(
        "follow_up.html",
        request,
        template_context(
            request,
            follow_up=follow_up,
            member=member,
            member_label=member.name or _masked(member.openid),
            phone=(member.phone or "") if sees_phone else mask_phone(member.phone),
            attempts=attempts,
            assignee=assignee,
            agents=agents,
            outcomes=OUTCOMES,
            may_work=follow_up.status == "open"
            and (staff.role == "admin" or follow_up.assigned_to in (None, staff.staff_id)),
            now=utcnow(),
            zone=rules.zone,
            rules=rules,
        ),
    )


@routes.post("/follow-ups/{id:\\d+}/assign")
@requires(*AGENTS)
async def assign_follow_up(request: web.Request) -> web.StreamResponse:
    """Take an unassigned follow-up (an admin: give any to an agent, ``to``)."""
    follow_up_id = int(request.match_info["id"])
    form = await request.post()
    staff = request[STAFF]
    admin = staff.role == "admin"
    now = utcnow()
    async with _sessions(request).begin() as db:
        to_id = staff.staff_id
        wanted = _field(form, "to")
        if admin and wanted:
            colleague = await find_staff(db, wanted)
            if colleague is None or colleague.disabled or colleague.role not in AGENTS:
                raise web.HTTPBadRequest(text=cs_tools_copy.NO_SUCH_AGENT)
            to_id = colleague.id
        try:
            await assign(db, follow_up_id, staff.staff_id, to_id, admin=admin)
        except FollowUpRefused as exc:
            raise _refused(exc) from None
        await audit(db, staff.staff_id, "follow_up_assign", now, target=str(follow_up_id), to=to_id)
    raise web.HTTPSeeOther(f"/console/follow-ups/{follow_up_id}")


@routes.post("/follow-ups/{id:\\d+}/attempt")
@requires(*AGENTS)
async def attempt(request: web.Request) -> web.StreamResponse:
    """Record a call: connected (接通) or not, and a note."""
    follow_up_id = int(request.match_info["id"])
    form = await request.post()
    connected = _field(form, "connected")
    if connected not in ("yes", "no"):
        raise web.HTTPBadRequest(text=cs_tools_copy.CONNECTED_CHOICE)
    note = _note(form)
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        try:
            await record_attempt(
                db,
                follow_up_id,
                staff.staff_id,
                connected == "yes",
                note,
                now,
                admin=staff.role == "admin",
            )
        except FollowUpRefused as exc:
            raise _refused(exc) from None
        await audit(
            db,
            staff.staff_id,
            "follow_up_attempt",
            now,
            target=str(follow_up_id),
            connected=connected == "yes",
        )
    raise web.HTTPSeeOther(f"/console/follow-ups/{follow_up_id}")


@routes.post("/follow-ups/{id:\\d+}/close")
@requires(*AGENTS)
async def close(request: web.Request) -> web.StreamResponse:
    """Close the follow-up with its outcome."""
    follow_up_id = int(request.match_info["id"])
    form = await request.post()
    note = _note(form)
    staff = request[STAFF]
    now = utcnow()
    outcome = _field(form, "outcome")
    async with _sessions(request).begin() as db:
        try:
            await close_follow_up(
                db, follow_up_id, staff.staff_id, outcome, note, now, admin=staff.role == "admin"
            )
        except FollowUpRefused as exc:
            raise _refused(exc) from None
        await audit(
            db, staff.staff_id, "follow_up_close", now, target=str(follow_up_id), outcome=outcome
        )
    raise web.HTTPSeeOther(f"/console/follow-ups/{follow_up_id}")


def _refused(exc: FollowUpRefused) -> web.HTTPException:
    text = cs_tools_copy.FOLLOW_UP_REFUSED[exc.reason]
    if exc.reason == "missing":
        return web.HTTPNotFound(text=text)
    if exc.reason == "bad_outcome":
        return web.HTTPBadRequest(text=text)
    return web.HTTPConflict(text=text)


def _note(form: Any) -> str:
    note = _field(form, "note").strip()
    if len(note) > 500:
        raise web.HTTPBadRequest(text=cs_tools_copy.NOTE_LENGTH)
    return note


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _masked(openid: str | None) -> str:
    return mask_openid(openid) if openid else "…"
