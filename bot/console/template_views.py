"""The template-message page (marketers and admins): for each service notice, the WeChat
template a brand applies for, the fields the code fills, whether ``[delivery.templates]``
configures one, and how many notices this month were skipped for want of one."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import requires, template_context
from bot.push.templates import BY_PURPOSE, TEMPLATE_PURPOSES
from messages import console_copy as copy
from models.base import utcnow
from models.dashboard import skipped_without_channel

routes = web.RouteTableDef()
MARKETING = ("marketer", "admin")


def month_start(zone: Any, now: datetime) -> datetime:
    """The first instant of ``now``'s local month, in UTC."""
    first = now.astimezone(zone).date().replace(day=1)
    return datetime.combine(first, time(0), zone).astimezone(UTC)


async def template_status(request: web.Request) -> dict[str, Any]:
    """Per purpose, the template's state and this month's notices skipped for want of it;
    also the purposes that never go as templates and were skipped, and the totals."""
    config = request.config_dict[wiring.CONFIG]
    async with request.config_dict[wiring.SESSIONS]() as db:
        skipped = await skipped_without_channel(db, month_start(config.programme.zone, utcnow()))
    rows = []
    for entry in TEMPLATE_PURPOSES:
        template = config.delivery.templates.get(entry.purpose)
        rows.append(
            {
                "purpose": entry.purpose,
                "name": copy.PURPOSE_NAMES.get(entry.purpose, entry.purpose),
                "what": entry.what,
                "library_title": entry.library_title,
                "fields": entry.fields,
                "template_id": template.template_id if template else None,
                "mapping": template.fields if template else {},
                "skipped": skipped.get(entry.purpose, 0),
            }
        )
    others = [
        (copy.PURPOSE_NAMES.get(purpose, purpose), count)
        for purpose, count in skipped.items()
        if purpose not in BY_PURPOSE
    ]
    return {
        "rows": rows,
        "others": others,
        "configured": sum(1 for row in rows if row["template_id"]),
        "skipped_total": sum(skipped.values()),
    }


@routes.get("/templates")
@requires(*MARKETING)
async def templates_page(request: web.Request) -> web.StreamResponse:
    """模板消息: what each service notice needs from WeChat's template library."""
    status = await template_status(request)
    return aiohttp_jinja2.render_template(
        "templates.html", request, template_context(request, **status)
    )
