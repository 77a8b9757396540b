"""Shop events in the console (admins): each subscriber's delivery counts and log, and replay
of a delivery that was delivered or gave up."""

from __future__ import annotations

from datetime import timedelta

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.push.shop_hooks import hooks_outbox
from models.base import utcnow
from models.hooks import HookSubscriber, delivery_counts, delivery_log, replay
from models.staff import audit

routes = web.RouteTableDef()

STATUSES = ("queued", "sending", "delivered", "failed")


@routes.get("/hooks")
@requires("admin")
async def hooks_page(request: web.Request) -> web.StreamResponse:
    """The subscribers and, for the one chosen (``?subscriber=``), its latest deliveries,
    optionally of one status (``?status=``)."""
    chosen = request.query.get("subscriber", "")
    status = request.query.get("status") or None
    if status not in (None, *STATUSES):
        raise web.HTTPBadRequest(text="unknown status")
    async with request.config_dict[wiring.SESSIONS]() as db:
        subscribers = (await db.scalars(select(HookSubscriber).order_by(HookSubscriber.id))).all()
        counts = await delivery_counts(db)
        current = next((s for s in subscribers if str(s.id) == chosen), None)
        if current is None and subscribers:
            current = subscribers[0]
        log = await delivery_log(db, current.id, status=status, limit=100) if current else []
    return aiohttp_jinja2.render_template(
        "hooks.html",
        request,
        template_context(
            request,
            subscribers=subscribers,
            counts=counts,
            current=current,
            status=status,
            statuses=STATUSES,
            log=log,
            zone=request.config_dict[wiring.CONFIG].programme.zone,
        ),
    )


@routes.post("/hooks/deliveries/{id:\\d+}/replay")
@requires("admin")
async def replay_delivery(request: web.Request) -> web.StreamResponse:
    """Send a delivery again, with the same body and idempotency key."""
    delivery_id = int(request.match_info["id"])
    config = request.config_dict[wiring.CONFIG]
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        if not await replay(db, delivery_id, now, timedelta(hours=config.hooks.retry_hours)):
            raise web.HTTPConflict(text="this delivery is being sent, or does not exist")
        await audit(db, request[STAFF].staff_id, "hook_replay", now, target=str(delivery_id))
    await hooks_outbox(request.config_dict[wiring.REDIS]).enqueue([delivery_id])
    subscriber = str((await request.post()).get("subscriber", ""))
    raise web.HTTPSeeOther(
        f"/console/hooks?subscriber={subscriber}" if subscriber.isdecimal() else "/console/hooks"
    )
