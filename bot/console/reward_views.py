"""The points catalogue in the console: marketers and admins list, add, change and retire
items (each change in the audit log), with the stock left and what was redeemed; the
fulfilment list shows what shops still have to hand over. Agents may read the fulfilment list
(to answer a member asking after a gift), not change the catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import select

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.validation import first_error
from models.base import utcnow
from models.rewards import (
    FULFILMENT_STATUSES,
    RewardItem,
    RewardSpec,
    apply_spec,
    fulfilments,
    new_item,
    redemption_counts,
    spec_of,
)
from models.staff import audit

routes = web.RouteTableDef()
_TIMES = ("valid_from", "valid_until", "opens_at")
_NUMBERS = ("points_price", "cash_fen", "stock", "limit_count")


def _spec_from_form(form: Any, request: web.Request) -> tuple[RewardSpec | None, str, str]:
    """The form as an item, or None with the field and what is wrong with it."""
    config = request.config_dict[wiring.CONFIG]
    zone = config.programme.zone
    raw: dict[str, Any] = {}
    for name in RewardSpec.model_fields:
        if name in ("tiers", "early_tiers"):
            raw[name] = [str(v) for v in form.getall(name, [])]
            continue
        value = str(form.get(name, "")).strip()
        if name in _NUMBERS and value:
            if not value.isdigit():
                return None, name, "请填写整数"
            raw[name] = int(value)
        elif name in _TIMES and value:
            try:
                raw[name] = datetime.fromisoformat(value).replace(tzinfo=zone)
            except ValueError:
                return None, name, "时间格式不对"
        elif name == "cash_fen":
            continue
        else:
            raw[name] = value or None
    if yuan := str(form.get("cash_yuan", "")).strip():
        try:
            raw["cash_fen"] = round(float(yuan) * 100)
        except ValueError:
            return None, "cash_fen", "请填写金额"
    # The form shows every select: one that does not apply to the kind is not an error.
    if raw.get("kind") != "gift":
        raw["delivery"] = None
    if raw.get("kind") != "coupon":
        raw["coupon_kind"] = None
    for name in ("description", "image_url"):
        raw[name] = raw.get(name) or ""
    raw = {k: v for k, v in raw.items() if v is not None or k in ("stock", "limit_count")}
    try:
        spec = RewardSpec.model_validate(raw)
        spec.check(config.programme)
    except ValidationError as exc:
        field, message = first_error(exc)
        if field is None and ": " in message:
            field, message = message.split(": ", 1)
        return None, field or "", message
    except ValueError as exc:
        field, message = str(exc).split(": ", 1)
        return None, field, message
    return spec, "", ""


def _form_page(
    request: web.Request,
    item: RewardItem | None,
    values: dict[str, Any],
    error: tuple[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    config = request.config_dict[wiring.CONFIG]
    response = aiohttp_jinja2.render_template(
        "reward_form.html",
        request,
        template_context(
            request,
            item=item,
            values=values,
            error=error,
            tiers=config.programme.tiers,
            coupons=config.programme.coupons,
            zone=config.programme.zone,
        ),
    )
    response.set_status(status)
    return response


def _values(item: RewardItem | None, request: web.Request) -> dict[str, Any]:
    if item is None:
        blank: dict[str, Any] = dict.fromkeys(RewardSpec.model_fields, "")
        return blank | {
            "kind": "gift",
            "delivery": "pickup",
            "limit_period": "ever",
            "tiers": [],
            "early_tiers": [],
            "stock": None,
            "limit_count": None,
            "cash_yuan": "",
        }
    zone = request.config_dict[wiring.CONFIG].programme.zone
    values = spec_of(item).model_dump()
    values["cash_yuan"] = f"{item.cash_fen / 100:g}" if item.cash_fen else ""
    for name in _TIMES:
        if values[name] is not None:
            values[name] = values[name].astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    return values


def _form_values(form: Any) -> dict[str, Any]:
    values = {name: str(form.get(name, "")) for name in RewardSpec.model_fields}
    values["cash_yuan"] = str(form.get("cash_yuan", ""))
    values["tiers"] = list(form.getall("tiers", []))
    values["early_tiers"] = list(form.getall("early_tiers", []))
    return values


@routes.get("/rewards")
@requires("marketer", "admin")
async def rewards_page(request: web.Request) -> web.StreamResponse:
    """Every item, active first, with its stock and redemptions."""
    async with request.config_dict[wiring.SESSIONS]() as db:
        items = (
            await db.scalars(
                select(RewardItem).order_by(
                    RewardItem.status, RewardItem.points_price, RewardItem.id
                )
            )
        ).all()
        counts = await redemption_counts(db)
    config = request.config_dict[wiring.CONFIG]
    return aiohttp_jinja2.render_template(
        "rewards.html",
        request,
        template_context(
            request,
            items=items,
            counts=counts,
            tier_names={t.code: t.name for t in config.programme.tiers},
            coupon_names={c.code: c.name for c in config.programme.coupons},
            message=request.query.get("done", ""),
        ),
    )


@routes.get("/rewards/new")
@requires("marketer", "admin")
async def new_reward_page(request: web.Request) -> web.StreamResponse:
    return _form_page(request, None, _values(None, request))


@routes.post("/rewards")
@requires("marketer", "admin")
async def create_reward(request: web.Request) -> web.StreamResponse:
    """Add an item; a bad field re-shows the form with the error (400), nothing written."""
    form = await request.post()
    spec, field, message = _spec_from_form(form, request)
    if spec is None:
        return _form_page(request, None, _form_values(form), (field, message), 400)
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        item = new_item(spec, now)
        db.add(item)
        await db.flush()
        await audit(db, request[STAFF].staff_id, "reward_create", now, target=str(item.id))
    raise web.HTTPSeeOther("/console/rewards?done=created")


async def _item(request: web.Request, db: Any) -> RewardItem:
    item = await db.get(RewardItem, int(request.match_info["id"]))
    if item is None:
        raise web.HTTPNotFound(text="no such reward")
    return item


@routes.get("/rewards/{id:\\d+}")
@requires("marketer", "admin")
async def edit_reward_page(request: web.Request) -> web.StreamResponse:
    async with request.config_dict[wiring.SESSIONS]() as db:
        item = await _item(request, db)
    return _form_page(request, item, _values(item, request))


@routes.post("/rewards/{id:\\d+}")
@requires("marketer", "admin")
async def update_reward(request: web.Request) -> web.StreamResponse:
    """Change an item (its stock is what is left); audited with the fields changed."""
    form = await request.post()
    spec, field, message = _spec_from_form(form, request)
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        item = await _item(request, db)
        if spec is None:
            return _form_page(request, item, _form_values(form), (field, message), 400)
        before = spec_of(item).model_dump(mode="json")
        apply_spec(item, spec, now)
        changed = sorted(k for k, v in spec.model_dump(mode="json").items() if before[k] != v)
        await audit(
            db, request[STAFF].staff_id, "reward_update", now, target=str(item.id), fields=changed
        )
    raise web.HTTPSeeOther("/console/rewards?done=updated")


@routes.post("/rewards/{id:\\d+}/retire")
@requires("marketer", "admin")
async def retire_reward(request: web.Request) -> web.StreamResponse:
    """Retire an item: no longer listed or redeemable; what was redeemed stays."""
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        item = await _item(request, db)
        if item.status != "retired":
            item.status, item.updated_at = "retired", now
            await audit(db, request[STAFF].staff_id, "reward_retire", now, target=str(item.id))
    raise web.HTTPSeeOther("/console/rewards?done=retired")


@routes.get("/fulfilments")
@requires("agent", "marketer", "admin")
async def fulfilments_page(request: web.Request) -> web.StreamResponse:
    """Redeemed gifts, services and experiences, pending first (``?status=``)."""
    status = request.query.get("status", "pending")
    if status not in FULFILMENT_STATUSES:
        raise web.HTTPBadRequest(text="unknown status")
    async with request.config_dict[wiring.SESSIONS]() as db:
        rows = await fulfilments(db, status=status, limit=200)
    return aiohttp_jinja2.render_template(
        "fulfilments.html",
        request,
        template_context(
            request,
            rows=rows,
            status=status,
            statuses=FULFILMENT_STATUSES,
            zone=request.config_dict[wiring.CONFIG].programme.zone,
        ),
    )
