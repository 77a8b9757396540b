"""What the bot did not understand: kept (normalised, masked, counted), listed for agents and
admins, taught with one action that every process picks up, and forgotten in time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from bot import wiring
from messages import chat_copy
from models.base import utcnow
from models.misses import ChatMiss, ChatMissText
from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import add_staff, csrf_of, login
from tests.handlers.test_chat_understanding import say

PHRASE = "我的咖啡豆"
FAST = {"taught_refresh_seconds": 0.05}


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``condition`` holds (checked often), failing after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_taught_phrasing_takes_effect_in_another_process(
    app_factory: Callable[..., Any],
) -> None:
    console = await app_factory(chat=FAST)
    other = await app_factory(chat=FAST)  # a second process: same database and Redis
    for openid in ("o_miss_member01", "o_miss_member02"):
        await follower(other, openid)
    assert (await call(other, "POST", "/orders", order("M-1", "o_miss_member01")))[0] == 201
    first = await say(other, f"{PHRASE}？？", "o_miss_member01")
    assert first is not None
    # Not understood: asked back, or offered the menu; either way a miss.
    assert first.startswith((chat_copy.CLARIFY_TITLE, chat_copy.NOT_UNDERSTOOD_TITLE))
    await say(other, f"{PHRASE}😀", "o_miss_member02")

    await add_staff(console, "agent_wu", "agent")
    assert await login(console, "agent_wu") == 303
    page = await (await console.get("/console/misses")).text()
    row = re.search(rf"<td>{PHRASE}</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert row is not None, page
    assert (row[1], row[2]) == ("2", "2")  # counted by phrasing, members counted not named
    miss_id = re.search(r'/console/misses/(\d+)/teach"', page)
    assert miss_id is not None
    token = await csrf_of(console, "/console/misses")
    refused = await console.post(
        f"/console/misses/{miss_id[1]}/teach", data={"csrf": token, "intent": "nonsense"}
    )
    assert refused.status == 400
    taught = await console.post(
        f"/console/misses/{miss_id[1]}/teach",
        data={"csrf": token, "intent": "points"},
        allow_redirects=False,
    )
    assert taught.status == 303

    understander = other.app[wiring.SERVICES].intents
    await _until(lambda: understander.exactly(PHRASE) is not None)
    reply = await say(other, PHRASE, "o_miss_member01")
    assert reply is not None
    assert reply.startswith("您当前可用积分：100 分")
    page = await (await console.get("/console/misses")).text()
    assert "暂无未识别的问题" in page
    assert re.search(rf'<table id="taught">.*<td>{PHRASE}</td>', page, re.S)


async def test_a_phrasing_taught_to_a_faq_entry_gets_its_answer(
    app_factory: Callable[..., Any],
) -> None:
    faq = {"hours": {"patterns": ["营业时间"], "answer": "每天 10:00–22:00 营业。"}}
    client = await app_factory(chat={**FAST, "faq": faq})
    await follower(client, "o_miss_member03")
    await say(client, "你们礼拜天干活不", "o_miss_member03")
    async with client.app[wiring.SESSIONS]() as session:
        miss = await session.scalar(select(ChatMiss))
    assert miss is not None
    await add_staff(client, "admin_li", "admin")
    assert await login(client, "admin_li") == 303
    token = await csrf_of(client, "/console/misses")
    response = await client.post(
        f"/console/misses/{miss.id}/teach",
        data={"csrf": token, "intent": "faq:hours"},
        allow_redirects=False,
    )
    assert response.status == 303
    understander = client.app[wiring.SERVICES].intents
    await _until(lambda: understander.exactly("你们礼拜天干活不") is not None)
    assert await say(client, "你们礼拜天干活不", "o_miss_member03") == "每天 10:00–22:00 营业。"


async def test_members_words_are_forgotten_after_the_retention_period(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(chat={**FAST, "miss_retention_days": 30})
    await follower(client, "o_miss_member04")
    await say(client, "我的咖啡豆 手机13900001111", "o_miss_member04")
    await say(client, "积分", "o_miss_member04")
    await say(client, "我的咖啡豆 手机13900002222", "o_miss_member04")
    async with client.app[wiring.SESSIONS].begin() as session:
        phrasings = (await session.scalars(select(ChatMiss.phrasing))).all()
        assert phrasings == ["我的咖啡豆 手机#"]  # one phrasing, the numbers masked
        first = await session.scalar(select(ChatMissText.id).order_by(ChatMissText.id))
        await session.execute(
            update(ChatMissText)
            .where(ChatMissText.id == first)
            .values(created_at=utcnow() - timedelta(days=31))
        )
    # The refresh loop forgets too (at its first tick): whichever runs first, the old text goes.
    await client.app[wiring.TAUGHT].forget_old_texts()
    async with client.app[wiring.SESSIONS]() as session:
        kept = (await session.scalars(select(ChatMissText.text))).all()
        count = await session.scalar(select(ChatMiss.count))
    assert kept == ["我的咖啡豆 手机13900002222"]
    assert count == 2
