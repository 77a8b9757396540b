"""WeChat's retries: one side effect, the first reply back, and late replies by customer service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bot import wiring
from handlers import build_router
from handlers.inbound import Inbound
from handlers.router import Router, event, kind
from messages import copy
from messages.replies import TextReply
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn


class CountingCapability:
    """A capability that takes ``delay`` seconds and counts how often it really ran."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.runs = 0
        self.delay = delay
        self.fail = fail
        self.router = Router("counting")
        self.router.on(kind("text"))(self.answer)
        self.router.on(event("click"))(self.answer)
        self.root = Router("root")
        self.root.include(self.router, build_router())

    async def answer(self, msg: Inbound) -> TextReply:
        self.runs += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        return TextReply(f"第{self.runs}次回答：{msg.text or msg.key}")


async def test_retry_gets_the_first_reply_and_runs_nothing_again(
    app_factory: Callable[..., Any],
) -> None:
    capability = CountingCapability()
    client = await app_factory(router=capability.root)
    xml = PLAIN.text("o_retry_00001", "你好", msg_id=424242)
    first = await push(client, PLAIN, xml)
    second = await push(client, PLAIN, xml)  # a retry: same MsgId, new signature and nonce
    assert first.reply == second.reply
    assert first.reply is not None
    assert first.reply["Content"] == "第1次回答：你好"
    assert capability.runs == 1


async def test_retry_while_first_attempt_still_running(app_factory: Callable[..., Any]) -> None:
    capability = CountingCapability(delay=0.5)
    client = await app_factory(router=capability.root)
    xml = PLAIN.text("o_retry_00002", "在吗", msg_id=515151)
    first = asyncio.create_task(push(client, PLAIN, xml))
    await asyncio.sleep(0.1)
    retries = await asyncio.gather(*(push(client, PLAIN, xml) for _ in range(2)))
    answers = [await first, *retries]
    assert {a.reply["Content"] for a in answers if a.reply} == {"第1次回答：在吗"}
    assert all(a.status == 200 and a.reply for a in answers)
    assert capability.runs == 1


async def test_slow_handler_answers_success_then_replies_by_customer_service(
    app_factory: Callable[..., Any],
    standin: WeChatStandIn,
) -> None:
    capability = CountingCapability(delay=0.6)
    client = await app_factory(router=capability.root, reply_budget_seconds=0.2)
    xml = PLAIN.text("o_slow_000001", "查一下", msg_id=616161)
    started = time.monotonic()
    first = await push(client, PLAIN, xml)
    assert first.body == "success"
    assert time.monotonic() - started < 0.5
    retry = await push(client, PLAIN, xml)
    assert retry.body == "success"
    await client.app[wiring.TASKS].close(grace=5)
    assert standin.sent() == [
        {"touser": "o_slow_000001", "msgtype": "text", "text": {"content": "第1次回答：查一下"}}
    ]
    assert capability.runs == 1


async def test_failing_handler_says_busy_once(app_factory: Callable[..., Any]) -> None:
    capability = CountingCapability(fail=True)
    client = await app_factory(router=capability.root)
    xml = PLAIN.text("o_fail_000001", "你好", msg_id=717171)
    first = await push(client, PLAIN, xml)
    again = await push(client, PLAIN, xml)
    assert first.reply is not None
    assert first.reply["Content"] == copy.BUSY
    assert again.reply == first.reply
    assert capability.runs == 1


async def test_retried_event_runs_once_but_another_button_in_the_same_second_runs(
    app_factory: Callable[..., Any],
) -> None:
    capability = CountingCapability()
    client = await app_factory(router=capability.root)
    now = int(time.time())
    click = PLAIN.event("o_evt_0000001", "CLICK", "MENU_A", created=now)
    first, retry = [await push(client, PLAIN, click) for _ in range(2)]
    assert first.reply == retry.reply
    assert capability.runs == 1
    other = await push(client, PLAIN, PLAIN.event("o_evt_0000001", "CLICK", "MENU_B", created=now))
    assert other.reply is not None
    assert other.reply["Content"] == "第2次回答：MENU_B"
    assert capability.runs == 2


async def test_redis_down_answers_busy_without_side_effects_then_recovers(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    tmp_path: Any,
) -> None:
    from bot.app import create_app
    from tests.conftest import make_config
    from tests.helpers import member_count
    from tests.services import redis_server

    with redis_server(tmp_path) as url:
        client = await aiohttp_client(create_app(make_config(db_url, url)))
        ok = await push(client, PLAIN, PLAIN.text("o_redis_00001", "帮助"))
        assert ok.reply is not None
        assert ok.reply["Content"].startswith("您好")
    started = time.monotonic()
    busy = await push(client, PLAIN, PLAIN.text("o_redis_00002", "帮助"))
    assert time.monotonic() - started < 3
    assert busy.status == 200
    assert busy.reply is not None
    assert busy.reply["Content"] == copy.BUSY
    assert await member_count(client) == 1
    with redis_server(tmp_path):
        back = await push(client, PLAIN, PLAIN.text("o_redis_00002", "帮助"))
        assert back.reply is not None
        assert back.reply["Content"].startswith("您好")
        assert await member_count(client) == 2
