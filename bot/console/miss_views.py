"""What the bot did not understand (agents and admins): phrasings by count, and teaching one
to an intent or a FAQ entry, effective in every process within ``[chat]
taught_refresh_seconds`` (bot/wechat/taught.py)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from bot import wiring
from bot.console.auth import STAFF, requires, template_context
from bot.wechat.taught import announce
from messages import chat_copy
from models.base import utcnow
from models.misses import list_misses, teach
from models.staff import audit

routes = web.RouteTableDef()
AGENTS = ("agent", "admin")
FAQ = "faq"
# Intents that answer on their own (a taught phrasing cannot be a confirmation of something).
_NOT_TEACHABLE = frozenset({"birthday_confirm"})


def _choices(request: web.Request) -> dict[str, str]:
    """What a phrasing can be taught to: value → label (``faq:<key>`` for FAQ entries)."""
    config = request.config_dict[wiring.CONFIG]
    intents = dict.fromkeys(request.config_dict[wiring.ROUTER].intents())
    found = {
        name: chat_copy.INTENT_NAMES.get(name, name)
        for name in intents
        if name not in _NOT_TEACHABLE and name != FAQ
    }
    if FAQ in intents:
        for key, entry in config.chat.faq.items():
            found[f"{FAQ}:{key}"] = f"{chat_copy.INTENT_NAMES[FAQ]}：{entry.patterns[0]}"
    return found


@routes.get("/misses")
@requires(*AGENTS)
async def misses_page(request: web.Request) -> web.StreamResponse:
    """The phrasings not understood, most frequent first, and those already taught."""
    async with request.config_dict[wiring.SESSIONS]() as db:
        waiting = await list_misses(db, taught=False)
        taught = await list_misses(db, taught=True)
    config = request.config_dict[wiring.CONFIG]
    return aiohttp_jinja2.render_template(
        "misses.html",
        request,
        template_context(
            request,
            waiting=waiting,
            taught=taught,
            choices=_choices(request),
            zone=config.programme.zone,
            retention_days=config.chat.miss_retention_days,
        ),
    )


@routes.post("/misses/{id:\\d+}/teach")
@requires(*AGENTS)
async def teach_phrasing(request: web.Request) -> web.StreamResponse:
    """Attach the phrasing to the chosen intent or FAQ entry; every process picks it up."""
    miss_id = int(request.match_info["id"])
    chosen = str((await request.post()).get("intent", ""))
    if chosen not in _choices(request):
        raise web.HTTPBadRequest(text="choose an intent or a FAQ entry")
    intent, _, faq_key = chosen.partition(":")
    staff = request[STAFF]
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as db:
        miss = await teach(db, miss_id, intent, faq_key or None, staff.staff_id, now)
        if miss is None:
            raise web.HTTPNotFound(text="no such phrasing")
        await audit(db, staff.staff_id, "teach_phrasing", now, target=str(miss_id), intent=chosen)
    await announce(request.config_dict[wiring.REDIS])
    raise web.HTTPSeeOther("/console/misses")
