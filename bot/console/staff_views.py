"""Staff accounts from the console (admins): add one, change its role, reset its password,
disable or enable it, with the command line's rules (models/staff_accounts.py, and
``hash_password`` for the password). A change of role, password or access ends the account's
open sessions, so it takes effect at once."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from bot import wiring
from bot.console.auth import SESSIONS, STAFF, hash_password, requires, template_context
from messages import cs_tools_copy
from models.base import utcnow
from models.staff import ROLES, Staff
from models.staff_accounts import (
    StaffRefused,
    add_account,
    change_role,
    reset_password,
    set_disabled,
)

routes = web.RouteTableDef()


def _sessions(request: web.Request) -> Any:
    return request.config_dict[wiring.SESSIONS]


@routes.get("/staff")
@requires("admin")
async def staff_page(request: web.Request) -> web.StreamResponse:
    """Every account, with its forms, and the form to add one."""
    return await _page(request)


async def _page(
    request: web.Request, status: int = 200, error: str | None = None, **typed: str
) -> web.StreamResponse:
    async with _sessions(request)() as db:
        accounts = (await db.scalars(select(Staff).order_by(Staff.username))).all()
    zone = request.config_dict[wiring.CONFIG].programme.zone
    return aiohttp_jinja2.render_template(
        "staff.html",
        request,
        template_context(
            request, accounts=accounts, roles=ROLES, error=error, typed=typed, zone=zone
        ),
        status=status,
    )


def _hashed(password: str) -> str | None:
    try:
        return hash_password(password)
    except ValueError:
        return None


@routes.post("/staff")
@requires("admin")
async def add(request: web.Request) -> web.StreamResponse:
    """A new account."""
    form = await request.post()
    username = _field(form, "username").strip()
    role = _field(form, "role")
    hashed = _hashed(_field(form, "password"))
    if hashed is None:
        return await _page(request, 400, cs_tools_copy.STAFF_ERRORS["password"], username=username)
    try:
        async with _sessions(request).begin() as db:
            await add_account(db, username, hashed, role, utcnow(), request[STAFF].staff_id)
    except StaffRefused as exc:
        return await _page(request, 400, cs_tools_copy.STAFF_ERRORS[exc.reason], username=username)
    raise web.HTTPSeeOther("/console/staff")


@routes.post("/staff/{id:\\d+}/role")
@requires("admin")
async def role(request: web.Request) -> web.StreamResponse:
    """Change an account's role."""
    wanted = _field(await request.post(), "role")
    return await _change(request, lambda db, sid, now, by: change_role(db, sid, wanted, now, by))


@routes.post("/staff/{id:\\d+}/password")
@requires("admin")
async def password(request: web.Request) -> web.StreamResponse:
    """Reset an account's password."""
    hashed = _hashed(_field(await request.post(), "password"))
    if hashed is None:
        return await _page(request, 400, cs_tools_copy.STAFF_ERRORS["password"])
    return await _change(request, lambda db, sid, now, by: reset_password(db, sid, hashed, now, by))


@routes.post("/staff/{id:\\d+}/disable")
@requires("admin")
async def disable(request: web.Request) -> web.StreamResponse:
    """Disable an account (never the last enabled admin)."""
    return await _change(request, lambda db, sid, now, by: set_disabled(db, sid, True, now, by))


@routes.post("/staff/{id:\\d+}/enable")
@requires("admin")
async def enable(request: web.Request) -> web.StreamResponse:
    """Enable a disabled account again."""
    return await _change(request, lambda db, sid, now, by: set_disabled(db, sid, False, now, by))


async def _change(request: web.Request, change: Any) -> web.StreamResponse:
    staff_id = int(request.match_info["id"])
    try:
        async with _sessions(request).begin() as db:
            changed = await change(db, staff_id, utcnow(), request[STAFF].staff_id)
    except StaffRefused as exc:
        status = 404 if exc.reason == "missing" else 409 if exc.reason == "last_admin" else 400
        return await _page(request, status, cs_tools_copy.STAFF_ERRORS[exc.reason])
    if not changed:
        raise web.HTTPSeeOther("/console/staff")
    # Sessions hold the role they were started with: end them so the change holds now.
    await request.config_dict[SESSIONS].end_all_of(staff_id)
    if staff_id == request[STAFF].staff_id:
        raise web.HTTPSeeOther("/console/login")
    raise web.HTTPSeeOther("/console/staff")


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
