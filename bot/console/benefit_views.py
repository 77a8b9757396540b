"""礼遇规则 (marketers and admins): every benefit rule with its status, gifts, this month's
issue against its budget (and says when it is spent), and its holdout; pause, resume and
change amounts, stored over the configured defaults and audited (models/benefits/)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from messages import console_copy as copy
from models.base import utcnow
from models.benefits.engine import month_of
from models.benefits.registry import change_rule, changes_from_form, rule_rows

routes = web.RouteTableDef()
MARKETING = ("marketer", "admin")


def rule_name(code: str, settings: Any) -> str:
    """A rule's Chinese name for the console."""
    if code.startswith("boost:"):
        return copy.BOOST_RULE_NAME.format(name=settings.name)
    return copy.BENEFIT_RULE_NAMES.get(code, code)


async def _render(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.Response:
    rules = request.config_dict[wiring.CONFIG].programme
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS]() as db:
        rows = await rule_rows(db, rules, now)
    saved = request.query.get("saved")
    names = {row.code: rule_name(row.code, row.settings) for row in rows}
    response = aiohttp_jinja2.render_template(
        "benefits.html",
        request,
        template_context(
            request,
            rows=rows,
            names=names,
            month=month_of(rules, now),
            coupons={kind.code: kind.name for kind in rules.coupons},
            tiers={tier.code: tier.name for tier in rules.tiers},
            segments=copy.SEGMENT_NAMES,
            saved=copy.BENEFIT_SAVED.format(rule=names[saved]) if saved in names else None,
            error=error,
        ),
    )
    response.set_status(status)
    return response


@routes.get("/benefits")
@requires(*MARKETING)
async def benefits_page(request: web.Request) -> web.StreamResponse:
    """Every rule: status, gifts, this month's issue against its budget, holdout."""
    return await _render(request)


async def _change(request: web.Request, changes: dict[str, Any] | None) -> web.StreamResponse:
    code = request.match_info["code"]
    rules = request.config_dict[wiring.CONFIG].programme
    form = {k: str(v) for k, v in (await request.post()).items()}
    staff = request[STAFF]
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS]() as db:
        rows = {row.code: row for row in await rule_rows(db, rules, now)}
    if code not in rows:
        raise web.HTTPNotFound(text="no such benefit rule")
    name = rule_name(code, rows[code].settings)
    try:
        wanted = changes if changes is not None else changes_from_form(rows[code].settings, form)
        async with request.config_dict[wiring.SESSIONS].begin() as db:
            await change_rule(db, rules, code, wanted, staff.staff_id, now)
    except ValueError as exc:
        return await _render(request, copy.BENEFIT_BAD.format(rule=name, error=exc), 400)
    raise web.HTTPSeeOther(f"/console/benefits?saved={code}")


@routes.post("/benefits/{code}/pause")
@requires(*MARKETING)
async def pause_rule(request: web.Request) -> web.StreamResponse:
    """Pause a rule: it issues nothing, and no copy promises it, until resumed."""
    return await _change(request, {"enabled": False})


@routes.post("/benefits/{code}/resume")
@requires(*MARKETING)
async def resume_rule(request: web.Request) -> web.StreamResponse:
    """Resume a paused rule."""
    return await _change(request, {"enabled": True})


@routes.post("/benefits/{code}")
@requires(*MARKETING)
async def change_amounts(request: web.Request) -> web.StreamResponse:
    """Change a rule's amounts: its gifts (coupon kind, points), budget, multiplier, holdout."""
    return await _change(request, None)
