"""The console's sub-application: templates, static files, routes and security headers."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.console import (
    benefit_views,
    campaign_views,
    canned_views,
    case_views,
    events,
    followup_views,
    hook_views,
    member_views,
    miss_views,
    report_views,
    reward_views,
    staff_views,
    template_views,
    views,
)

HERE = Path(__file__).parent
PREFIX = "/console"

# Only this host's scripts, styles and connections; never framed (clickjacking).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    if not response.prepared:
        response.headers.update(HEADERS)
    return response


def create_console_app() -> web.Application:
    """The console, to be mounted at ``/console``."""
    app = web.Application(middlewares=[_security_headers])
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    app.add_routes(views.routes)
    app.add_routes(campaign_views.routes)
    app.add_routes(hook_views.routes)
    app.add_routes(miss_views.routes)
    app.add_routes(report_views.routes)
    app.add_routes(reward_views.routes)
    app.add_routes(template_views.routes)
    app.add_routes(case_views.routes)
    app.add_routes(followup_views.routes)
    app.add_routes(member_views.routes)
    app.add_routes(canned_views.routes)
    app.add_routes(staff_views.routes)
    app.add_routes(benefit_views.routes)
    app.router.add_get("/events", events.events)
    app.router.add_static("/static", HERE / "static")
    return app
