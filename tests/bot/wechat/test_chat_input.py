"""Whatever members type: emoji, very long text, control characters, SQL and template
injection. The bot answers politely (or WeChat's XML is refused with a 4xx), nothing is run or
rendered, and the console shows it as typed, escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from messages import copy
from models.conversations import ConversationMessage
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import NO_QUIET_HOURS, add_staff, conversation_of, login
from tests.helpers import PLAIN, member_count, push

OPENID = "o_hostile_text01"
HOSTILE = [
    "😀🎉👍🏻" * 200,
    "积分" * 1000,
    "'; DROP TABLE members; --",
    "1' OR '1'='1",
    "{{ 7*7 }} {% for x in range(9) %}x{% endfor %} ${7*7} #{7*7}",
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "%s%s%s%n %(name)s {0} {name}",
    "\u202e\u200b\u200d\ufeff 反向文字",
    "../../etc/passwd \\x00 \\u0000",
    "\t\r\n  \t",
]
# Characters XML 1.0 does not allow: WeChat never sends them; a request holding one is refused.
CONTROL = "\x01\x07\x1b[31m"


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_text_gets_a_polite_answer_and_runs_nothing(
    client: TestClient, text: str
) -> None:
    await follower(client, OPENID)
    answer = await push(client, PLAIN, PLAIN.text(OPENID, text))
    assert answer.status == 200
    assert answer.reply is not None
    content = answer.reply["Content"]
    assert content  # an answer, in Chinese, that repeats nothing it was given
    assert content != copy.BUSY  # not a handler that failed
    assert "49" not in content
    assert "<script" not in content
    assert "DROP" not in content
    assert await member_count(client) == 1  # the table is still there, with its one member


async def test_control_characters_are_refused_without_a_server_error(client: TestClient) -> None:
    await follower(client, OPENID)
    answer = await push(client, PLAIN, PLAIN.text(OPENID, CONTROL))
    assert 400 <= answer.status < 500


async def test_the_console_shows_what_members_typed_escaped_and_unrendered(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    await follower(client, OPENID)
    await push(client, PLAIN, PLAIN.text(OPENID, "人工"))
    for text in HOSTILE[2:6]:
        answer = await push(client, PLAIN, PLAIN.text(OPENID, text))
        assert answer.status == 200
    conversation = await conversation_of(client, OPENID)
    async with client.app[wiring.SESSIONS]() as session:
        stored = (
            await session.scalars(
                select(ConversationMessage.content).where(
                    ConversationMessage.conversation_id == conversation.id
                )
            )
        ).all()
    assert set(HOSTILE[2:6]) <= set(stored)  # kept as typed
    await add_staff(client, "agent_wu", "agent")
    assert await login(client, "agent_wu") == 303
    page = await (await client.get(f"/console/conversations/{conversation.id}")).text()
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "{{ 7*7 }}" in page  # shown, not rendered
    assert "&#39;; DROP TABLE members; --" in page
