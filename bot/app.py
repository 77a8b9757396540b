"""The app factory: ``create_app(config)`` wires every resource and route."""

from __future__ import annotations

from aiohttp import web

from bot import health, recap_page, referral_page, wiring
from bot.api.app import PREFIX, create_api_app
from bot.config import Config
from bot.console import app as console_app
from bot.metrics import Metrics
from bot.request_log import request_log_middleware
from handlers import build_router
from handlers.router import Router


async def _wechat_get(request: web.Request) -> web.Response:
    return await request.app[wiring.WEBHOOK].verify(request)


async def _wechat_post(request: web.Request) -> web.Response:
    return await request.app[wiring.WEBHOOK].receive(request)


def create_app(config: Config, router: Router | None = None) -> web.Application:
    """The web application for ``config``; resources open on startup and close on cleanup.

    ``router`` replaces the conversation router (tests compose their own capabilities).
    """
    metrics = Metrics()
    app = web.Application(middlewares=[request_log_middleware(metrics)])
    app[wiring.CONFIG] = config
    app[wiring.METRICS] = metrics
    app[wiring.ROUTER] = router or build_router()
    app.cleanup_ctx.extend(
        [
            wiring.redis,
            wiring.database,
            wiring.wechat,
            wiring.webhook,
            wiring.delivery,
            wiring.console,
            wiring.scheduling,
        ]
    )
    app.add_routes(
        [
            web.get("/wechat", _wechat_get),
            web.post("/wechat", _wechat_post),
            *health.routes,
            *recap_page.routes,
            *referral_page.routes,
        ]
    )
    app.add_subapp(PREFIX, create_api_app(config.api.token.get_secret_value()))
    app.add_subapp(console_app.PREFIX, console_app.create_console_app())
    return app
