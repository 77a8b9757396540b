"""The app factory: ``create_app(config)`` wires every resource and route."""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from bot import health, wiring
from bot.api.app import PREFIX, create_api_app
from bot.config import Config
from bot.console import app as console_app
from bot.metrics import Metrics
from bot.pages import centre as centre_page
from bot.pages import recap as recap_page
from bot.pages import referral as referral_page
from bot.pages import rewards as rewards_page
from bot.pages.session import AUTH as CENTRE_AUTH
from bot.pages.session import CentreAuth
from bot.request_log import RequestLog, request_log_middleware
from handlers import build_router
from handlers.router import Router


async def _wechat_get(request: web.Request) -> web.Response:
    return await request.app[wiring.WEBHOOK].verify(request)


async def _wechat_post(request: web.Request) -> web.Response:
    return await request.app[wiring.WEBHOOK].receive(request)


# What a process can be (``python -m bot serve --role``): the webhook, API and console; the
# push pipeline's consumers; the scheduler (one leader among however many run).
WEB, WORKER, SCHEDULER = "web", "worker", "scheduler"
ROLES = (WEB, WORKER, SCHEDULER)


def create_app(
    config: Config, router: Router | None = None, roles: Collection[str] = ROLES
) -> web.Application:
    """The application for ``config`` playing ``roles``; resources open on startup and close
    on cleanup. A process without the web role serves only ``/healthz`` and ``/metrics``.

    ``router`` replaces the conversation router (tests compose their own capabilities).
    """
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}, not {sorted(unknown)}")
    metrics = Metrics()
    lines = RequestLog()
    app = web.Application(middlewares=[request_log_middleware(metrics, lines)])
    # After the cleanup contexts (aiohttp runs them first): the last requests' lines too.
    app.on_cleanup.append(lines.close)
    app[wiring.CONFIG] = config
    app[wiring.METRICS] = metrics
    app[wiring.REQUEST_LOG] = lines
    app[wiring.ROUTER] = router or build_router()
    app.cleanup_ctx.extend([wiring.redis, wiring.database])
    if WEB in roles or WORKER in roles:
        app.cleanup_ctx.append(wiring.wechat)
    if WEB in roles:
        app.cleanup_ctx.extend([wiring.webhook, wiring.console])
    if WORKER in roles:
        app.cleanup_ctx.append(wiring.delivery)
    if SCHEDULER in roles:
        app.cleanup_ctx.append(wiring.scheduling)
    app.add_routes(health.routes)
    if WEB not in roles:
        return app
    app.add_routes(
        [
            web.get("/wechat", _wechat_get),
            web.post("/wechat", _wechat_post),
            *recap_page.routes,
            *referral_page.routes,
            *rewards_page.routes,  # before the centre's catch-all under /m/
            *centre_page.routes,
        ]
    )
    app[CENTRE_AUTH] = CentreAuth(config)
    app.add_subapp(PREFIX, create_api_app(config.api))
    app.add_subapp(console_app.PREFIX, console_app.create_console_app())
    return app
