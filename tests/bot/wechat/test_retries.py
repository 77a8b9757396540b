"""WeChat's retries: one side effect, the first reply back, and late replies by customer service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from bot import wiring
from handlers import build_router
from handlers.inbound import Inbound
from handlers.router import Router, event, kind
from messages import copy
from messages.replies import TextReply
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, push
from tests.services import redis_server
from tests.wechat_standin import Fault, WeChatStandIn


class CountingCapability:
    """A capability that takes ``delay`` seconds (or until ``hold`` is set, when given) and
    counts how often it really ran."""

    def __init__(
        self, delay: float = 0.0, fail: bool = False, hold: asyncio.Event | None = None
    ) -> None:
        self.runs = 0
        self.delay = delay
        self.fail = fail
        self.hold = hold
        self.router = Router("counting")
        self.router.on(kind("text"))(self.answer)
        self.router.on(event("click"))(self.answer)
        self.root = Router("root")
        self.root.include(self.router, build_router())

    async def answer(self, msg: Inbound) -> TextReply:
        self.runs += 1
        await asyncio.sleep(self.delay)
        if self.hold is not None:
            await self.hold.wait()
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


async def _answered_success_while_held(
    app_factory: Callable[..., Any], openid: str, msg_id: int
) -> tuple[Any, asyncio.Event]:
    """A member's text whose handler waits for the returned event: answered ``success``."""
    hold = asyncio.Event()
    capability = CountingCapability(hold=hold)
    client = await app_factory(router=capability.root, reply_budget_seconds=0.2)
    answer = await push(client, PLAIN, PLAIN.text(openid, "查一下", msg_id=msg_id))
    assert answer.body == "success"
    return client, hold


async def test_late_reply_takes_a_window_slot_and_a_shared_rate_limit_token(
    app_factory: Callable[..., Any], standin: WeChatStandIn, redis: Redis
) -> None:
    client, hold = await _answered_success_while_held(app_factory, "o_late_000001", 626262)
    hold.set()
    await client.app[wiring.TASKS].close(grace=5)
    assert len(standin.sent()) == 1
    # One of the 5 messages the member's text allows, counted like the pushes' and console's.
    assert await redis.hget("cs:window:o_late_000001", "sent") == b"1"
    # And one token of the customer-service API's bucket, shared with every other sender.
    assert float(await redis.hget("ratelimit:custom", "tokens") or 0) == 199.0


async def test_late_reply_is_not_sent_when_the_window_is_spent(
    app_factory: Callable[..., Any], standin: WeChatStandIn, redis: Redis
) -> None:
    client, hold = await _answered_success_while_held(app_factory, "o_late_000002", 636363)
    await redis.hset("cs:window:o_late_000002", "sent", 5)  # pushes spent it meanwhile
    hold.set()
    await client.app[wiring.TASKS].close(grace=5)
    assert standin.sent() == []


async def test_late_reply_refused_for_the_window_closes_it(
    app_factory: Callable[..., Any], standin: WeChatStandIn, redis: Redis
) -> None:
    client, hold = await _answered_success_while_held(app_factory, "o_late_000003", 646464)
    standin.fail_next("/cgi-bin/message/custom/send", Fault(errcode=45047))
    hold.set()
    await client.app[wiring.TASKS].close(grace=5)
    assert standin.sent() == []
    assert not await redis.exists("cs:window:o_late_000003")


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


async def test_redis_down_answers_busy_without_side_effects_keeps_receipts_then_recovers(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    tmp_path: Any,
) -> None:
    from bot.app import create_app
    from models.deliveries import TemplateReceipt
    from tests.conftest import make_config
    from tests.helpers import member_count

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
    # A template's receipt, which WeChat sends once: kept, and answered "success" with no busy
    # text to anyone.
    receipt = PLAIN.event(
        "o_redis_00001",
        "TEMPLATESENDJOBFINISH",
        extra="<MsgID>700000000001</MsgID><Status><![CDATA[failed:user block]]></Status>",
    )
    answer = await push(client, PLAIN, receipt)
    assert (answer.status, answer.body) == (200, "success")

    async def kept() -> list[tuple[int, str]]:
        async with client.app[wiring.SESSIONS]() as session:
            rows = (await session.scalars(select(TemplateReceipt))).all()
        return [(r.msgid, r.status) for r in rows]

    assert await eventually(kept) == [(700000000001, "failed:user block")]
    with redis_server(tmp_path):
        # The pipe reconnects on the next message; on a busy machine that first one may
        # still find it connecting (the busy reply again), so the member writes again.
        for _ in range(20):
            back = await push(client, PLAIN, PLAIN.text("o_redis_00002", "帮助"))
            assert back.reply is not None
            if back.reply["Content"] != copy.BUSY:
                break
            await asyncio.sleep(0.25)
        assert back.reply["Content"].startswith("您好")
        assert await member_count(client) == 2


async def test_a_reply_redis_cannot_keep_still_reaches_the_member(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.app import create_app
    from tests.conftest import make_config

    hold = asyncio.Event()
    capability = CountingCapability(hold=hold)
    with redis_server(tmp_path) as url:
        config = make_config(db_url, url)
        client = await aiohttp_client(create_app(config, router=capability.root))
        hold.set()
        await push(client, PLAIN, PLAIN.text("o_store_00001", "你好"))  # the member is known
        hold.clear()
        answer = asyncio.create_task(push(client, PLAIN, PLAIN.text("o_store_00001", "在吗")))
        for _ in range(500):  # until the handler holds the second message
            if capability.runs == 2:
                break
            await asyncio.sleep(0.01)
    # Redis went away after the gate: the reply cannot be kept for retries, but it is answered.
    hold.set()
    second = await answer
    assert second.reply is not None
    assert second.reply["Content"] == "第2次回答：在吗"
    for _ in range(100):
        if "could not store the outcome for retries" in caplog.text:
            break
        await asyncio.sleep(0.02)
    assert "could not store the outcome for retries" in caplog.text
