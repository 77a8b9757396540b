"""Segment codes never show raw in the console: every page that names a member's segment, or
an audience's, names it in Chinese (messages/console_copy.SEGMENT_NAMES)."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from bot import wiring
from messages.console_copy import SEGMENT_NAMES
from models.members import Member
from tests.bot.api.test_api import call, follower
from tests.bot.console.test_console import MEMBER, add_staff, conversation_of, login, say
from tests.scheduler.test_campaigns import spec

CODES = re.compile(r"\b(" + "|".join(code for code in SEGMENT_NAMES if code != "none") + r")\b")


def visible(html: str) -> str:
    """The page's text as a reader sees it: no tags, attributes, scripts or styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


async def test_no_page_shows_a_segment_code(client: TestClient) -> None:
    await follower(client, MEMBER)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(update(Member).values(segment="at_risk"))
    await say(client, "人工")
    conversation = await conversation_of(client)
    audience = {
        "root": {
            "all": [
                {"field": "segment", "op": "in", "value": ["at_risk", "dormant"]},
                {"field": "bought_category", "op": "in", "value": ["彩妆"], "months": 6},
            ]
        }
    }
    status, campaign = await call(client, "POST", "/campaigns", spec(audience=audience))
    assert status == 201
    await add_staff(client, "boss", "admin")
    await login(client, "boss")
    pages = {
        path: await (await client.get(path)).text()
        for path in (
            "/console/campaigns/new",
            f"/console/campaigns/{campaign['id']}",
            "/console/campaigns",
            f"/console/conversations/{conversation.id}",
            "/console/birthdays",
            "/console/dashboard",
        )
    }
    for path, html in pages.items():
        assert not CODES.findall(visible(html)), path
    assert "流失风险" in visible(pages["/console/campaigns/new"])
    assert "会员分群：流失风险、沉睡" in visible(pages[f"/console/campaigns/{campaign['id']}"])
    assert "近6个月买过彩妆" in visible(pages[f"/console/campaigns/{campaign['id']}"])
    assert "流失风险" in visible(pages[f"/console/conversations/{conversation.id}"])
