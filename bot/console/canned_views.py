"""Canned replies (models/canned.py): admins add, edit and delete them at /console/canned;
agents get them, with the member's name and tier filled in, under a conversation's reply box
(``rendered_for``). Every change is audited."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from messages import cs_tools_copy
from models.base import utcnow
from models.canned import (
    MAX_GROUP,
    MAX_TEXT,
    CannedReply,
    TemplateProblem,
    canned_replies,
    check_template,
    render,
)
from models.members import Member
from models.staff import audit

routes = web.RouteTableDef()


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


async def _replies(request: web.Request) -> list[CannedReply]:
    async with _sessions(request).begin() as db:  # the first read seeds the defaults
        return await canned_replies(db, cs_tools_copy.DEFAULT_CANNED_REPLIES, utcnow())


async def rendered_for(request: web.Request, member: Member) -> list[tuple[str, str]]:
    """(group, text) of every canned reply, filled in for ``member``."""
    rules = request.config_dict[wiring.CONFIG].programme
    name = member.name or cs_tools_copy.NAME_FALLBACK
    tier = rules.tier(member.tier).name
    return [(r.group, render(r.text, name, tier)) for r in await _replies(request)]


@routes.get("/canned")
@requires("admin")
async def canned_page(request: web.Request) -> web.StreamResponse:
    """Every canned reply, each in its own edit form, and a form to add one."""
    return await _page(request)


async def _page(
    request: web.Request, status: int = 200, error: str | None = None, **typed: str
) -> web.StreamResponse:
    return aiohttp_jinja2.render_template(
        "canned.html",
        request,
        template_context(request, replies=await _replies(request), error=error, typed=typed),
        status=status,
    )


def _checked(form: Any) -> tuple[str, str, int] | str:
    """The form's (group, text, position), or what is wrong with it."""
    group = _field(form, "group").strip()
    text = _field(form, "text").strip()
    if not 1 <= len(group) <= MAX_GROUP:
        return cs_tools_copy.CANNED_GROUP
    if not 1 <= len(text) <= MAX_TEXT:
        return cs_tools_copy.CANNED_TEXT
    try:
        check_template(text)
    except TemplateProblem as problem:
        if problem.reason == "braces":
            return cs_tools_copy.CANNED_BRACES
        return cs_tools_copy.CANNED_PLACEHOLDER.format(names="、".join(problem.names))
    try:
        position = int(_field(form, "position") or 0)
    except ValueError:
        position = 0
    return group, text, max(0, min(position, 999))


@routes.post("/canned")
@requires("admin")
async def add_reply(request: web.Request) -> web.StreamResponse:
    """Add a canned reply."""
    form = await request.post()
    checked = _checked(form)
    if isinstance(checked, str):
        return await _page(
            request, 400, checked, group=_field(form, "group"), text=_field(form, "text")
        )
    group, text, position = checked
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        await canned_replies(db, cs_tools_copy.DEFAULT_CANNED_REPLIES, now)
        reply = CannedReply(
            group=group, text=text, position=position, updated_by=staff.staff_id, updated_at=now
        )
        db.add(reply)
        await db.flush()
        await audit(db, staff.staff_id, "canned_add", now, target=str(reply.id), group=group)
    raise web.HTTPSeeOther("/console/canned")


@routes.post("/canned/{id:\\d+}")
@requires("admin")
async def edit_reply(request: web.Request) -> web.StreamResponse:
    """Change a canned reply's group, text and place."""
    reply_id = int(request.match_info["id"])
    form = await request.post()
    checked = _checked(form)
    if isinstance(checked, str):
        return await _page(request, 400, checked)
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        reply = await db.get(CannedReply, reply_id, with_for_update=True)
        if reply is None:
            raise web.HTTPNotFound(text="no such canned reply")
        reply.group, reply.text, reply.position = checked
        reply.updated_by, reply.updated_at = staff.staff_id, now
        await audit(db, staff.staff_id, "canned_edit", now, target=str(reply_id))
    raise web.HTTPSeeOther("/console/canned")


@routes.post("/canned/{id:\\d+}/delete")
@requires("admin")
async def delete_reply(request: web.Request) -> web.StreamResponse:
    """Remove a canned reply."""
    reply_id = int(request.match_info["id"])
    staff = request[STAFF]
    now = utcnow()
    async with _sessions(request).begin() as db:
        reply = await db.get(CannedReply, reply_id)
        if reply is None:
            raise web.HTTPNotFound(text="no such canned reply")
        await db.delete(reply)
        await audit(db, staff.staff_id, "canned_delete", now, target=str(reply_id), text=reply.text)
    raise web.HTTPSeeOther("/console/canned")


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
