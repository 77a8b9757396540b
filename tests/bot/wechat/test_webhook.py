"""The webhook in plaintext mode: replies, member records, and every refused input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from bot import wiring
from bot.app import create_app
from bot.config import RedisConfig
from bot.wechat.interactions import InteractionFlusher
from bot.wechat.webhook_client import SignedRequest
from handlers import build_router
from handlers.inbound import Inbound
from handlers.router import Router, kind
from messages import copy
from messages.replies import TextReply
from tests.conftest import make_config
from tests.helpers import PLAIN, get_member, member_count, push, redis_untouched
from tests.services import RedisRelay, tcp_redis_server, tls_files
from tests.wechat_standin import WeChatStandIn


async def test_text_message_gets_a_text_reply_to_the_sender(client: TestClient) -> None:
    answer = await push(client, PLAIN, PLAIN.text("o_alice_000001", "帮助"))
    assert answer.status == 200
    assert answer.reply is not None
    assert answer.reply["MsgType"] == "text"
    assert answer.reply["ToUserName"] == "o_alice_000001"
    assert answer.reply["FromUserName"] == PLAIN.account
    assert answer.reply["Content"].startswith("您好，我是会员小助手")


async def test_unknown_words_get_the_friendly_fallback(client: TestClient) -> None:
    answer = await push(client, PLAIN, PLAIN.text("o_alice_000001", "今天天气怎么样"))
    assert answer.reply is not None
    assert answer.reply["Content"].startswith(copy.FALLBACK)


async def test_keywords_match_full_width_case_and_trailing_punctuation(
    client: TestClient,
) -> None:
    for words in ("帮助", " 帮助！", "ＨＥＬＰ", "Help?", "?", "菜单。"):
        answer = await push(client, PLAIN, PLAIN.text("o_alice_000001", words))
        assert answer.reply is not None
        assert answer.reply["Content"].startswith("您好，我是会员小助手"), words


async def test_menu_click_routes_by_configured_key(client: TestClient) -> None:
    answer = await push(client, PLAIN, PLAIN.event("o_alice_000001", "CLICK", "MENU_HELP"))
    assert answer.reply is not None
    assert answer.reply["Content"].startswith("您好，我是会员小助手")
    unknown = await push(client, PLAIN, PLAIN.event("o_alice_000001", "CLICK", "NO_SUCH_KEY"))
    assert unknown.body == "success"


async def test_subscribe_creates_member_and_unsubscribe_keeps_it(client: TestClient) -> None:
    # Events are deduped on sender + CreateTime + event: give each its own second.
    now = int(time.time())
    welcome = await push(client, PLAIN, PLAIN.event("o_bob_0000001", "subscribe", created=now))
    assert welcome.reply is not None
    assert welcome.reply["Content"].startswith(copy.WELCOME)
    member = await get_member(client, "o_bob_0000001")
    assert member is not None
    assert member.subscribed

    bye = await push(client, PLAIN, PLAIN.event("o_bob_0000001", "unsubscribe", created=now + 1))
    assert bye.body == "success"
    member = await get_member(client, "o_bob_0000001")
    assert member is not None
    assert not member.subscribed
    assert member.unsubscribed_at is not None

    again = await push(client, PLAIN, PLAIN.event("o_bob_0000001", "subscribe", created=now + 2))
    assert again.reply is not None
    assert again.reply["Content"].startswith(copy.WELCOME_BACK)
    member = await get_member(client, "o_bob_0000001")
    assert member is not None
    assert member.subscribed
    assert member.unsubscribed_at is None
    assert await member_count(client) == 1


async def test_qr_follow_is_a_subscribe_too(client: TestClient) -> None:
    answer = await push(
        client,
        PLAIN,
        PLAIN.event(
            "o_carol_00001", "subscribe", "qrscene_R123", extra="<Ticket><![CDATA[t]]></Ticket>"
        ),
    )
    assert answer.reply is not None
    assert (await get_member(client, "o_carol_00001")) is not None


async def test_first_message_from_unknown_follower_creates_member(client: TestClient) -> None:
    await push(client, PLAIN, PLAIN.text("o_dave_000001", "你好"))
    member = await get_member(client, "o_dave_000001")
    assert member is not None
    assert member.subscribed


async def test_interaction_opens_the_window_and_reaches_the_database(
    client: TestClient,
    redis: Redis,
) -> None:
    before = int(time.time())
    await push(client, PLAIN, PLAIN.text("o_erin_000001", "你好"))
    window = await redis.hgetall("cs:window:o_erin_000001")
    assert int(window[b"quota"]) == 5
    assert 48 * 3600 - 5 <= await redis.ttl("cs:window:o_erin_000001") <= 48 * 3600
    await InteractionFlusher(client.app[wiring.PIPE], client.app[wiring.SESSIONS]).flush()
    member = await get_member(client, "o_erin_000001")
    assert member is not None
    assert member.last_interaction_at is not None
    assert member.last_interaction_at.timestamp() >= before
    assert await redis.zcard("interactions:pending") == 0


async def test_unknown_message_type_answers_success_and_writes_nothing(
    client: TestClient,
    redis: Redis,
) -> None:
    xml = (
        "<xml><ToUserName>gh_x</ToUserName><FromUserName>o_frank_00001</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>hologram</MsgType><MsgId>77</MsgId></xml>"
    )
    answer = await push(client, PLAIN, xml)
    assert (answer.status, answer.body) == (200, "success")
    popup = PLAIN.event("o_frank_00001", "subscribe_msg_popup_event")
    assert (await push(client, PLAIN, popup)).body == "success"
    assert await member_count(client) == 0
    assert await redis_untouched(redis)


async def _assert_refused(
    client: TestClient, redis: Redis, status: int, request: SignedRequest
) -> None:
    response = await client.post("/wechat", params=request.params, data=request.body)
    assert response.status == status, await response.text()
    assert await member_count(client) == 0
    assert await redis_untouched(redis)


async def test_bad_signature_is_refused(client: TestClient, redis: Redis) -> None:
    request = PLAIN.sign(PLAIN.event("o_gina_000001", "subscribe"))
    request.params["signature"] = "0" * 40
    await _assert_refused(client, redis, 403, request)


async def test_missing_signature_is_refused(client: TestClient, redis: Redis) -> None:
    request = PLAIN.sign(PLAIN.event("o_gina_000001", "subscribe"))
    del request.params["signature"]
    await _assert_refused(client, redis, 403, request)


async def test_stale_timestamp_is_refused(client: TestClient, redis: Redis) -> None:
    stale = int(time.time()) - 301
    await _assert_refused(
        client, redis, 403, PLAIN.sign(PLAIN.event("o_gina_000001", "subscribe"), timestamp=stale)
    )


async def test_oversized_body_is_refused(client: TestClient, redis: Redis) -> None:
    xml = PLAIN.text("o_gina_000001", "x" * 70_000)
    await _assert_refused(client, redis, 413, PLAIN.sign(xml))


async def test_malformed_xml_is_refused(client: TestClient, redis: Redis) -> None:
    for body in (
        "<xml><FromUserName>o_gina</FromUserName",
        "not xml at all",
        "",
        "<xml><MsgType>text</MsgType></xml>",
        "<xml><FromUserName><a>b</a></FromUserName><MsgType>text</MsgType></xml>",
        "<other><FromUserName>o</FromUserName></other>",
    ):
        await _assert_refused(client, redis, 400, PLAIN.sign(body))


async def test_messages_that_wechat_would_never_send_are_refused(
    client: TestClient, redis: Redis
) -> None:
    # Found by tests/bot/wechat/test_webhook_fuzz.py: each of these used to create a member.
    good = PLAIN.text("o_gina_000001", "积分", msg_id=7, created=1_700_000_000)
    for body in (
        good.replace("o_gina_000001", "!"),  # not an openid
        good.replace("o_gina_000001", "o gina"),
        good.replace("<CreateTime>1700000000</CreateTime>", ""),  # no time
        good.replace("<MsgId>7</MsgId>", ""),  # a member's message always has its id
    ):
        await _assert_refused(client, redis, 400, PLAIN.sign(body))


async def test_entity_declarations_are_refused(client: TestClient, redis: Redis) -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><FromUserName>&b;</FromUserName><MsgType>text</MsgType></xml>"
    )
    await _assert_refused(client, redis, 400, PLAIN.sign(laughs))


async def test_url_verification_echoes_echostr(client: TestClient) -> None:
    request = PLAIN.sign("")
    response = await client.get("/wechat", params={**request.params, "echostr": "4375120948"})
    assert (response.status, await response.text()) == (200, "4375120948")
    request.params["signature"] = "f" * 40
    response = await client.get("/wechat", params={**request.params, "echostr": "4375120948"})
    assert response.status == 403


async def test_members_get_answers_over_a_tls_redis(
    aiohttp_client: Callable[..., Any], db_url: str, tmp_path: Path
) -> None:
    # The webhook's pipe used to speak plaintext to the TLS port: "busy" for everyone, while
    # /healthz (redis-py only) said ok.
    files = tls_files(tmp_path)
    with tcp_redis_server(tls=files) as port:
        url = f"rediss://127.0.0.1:{port}/0"
        config = make_config(db_url, url).model_copy(
            update={"redis": RedisConfig(url=url, tls_ca_file=str(files.ca))}
        )
        client = await aiohttp_client(create_app(config))
        answer = await push(client, PLAIN, PLAIN.text("o_tls_0000001", "帮助"))
        assert answer.reply is not None
        assert answer.reply["Content"].startswith("您好，我是会员小助手")
        health = await client.get("/healthz")
        assert (health.status, (await health.json())["redis_pipe"]) == (200, "ok")
        await client.close()


class HeldCapability:
    """Answers texts, once ``release`` is set; ``on_enter`` runs as a handler starts."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.on_enter: Callable[[], None] = lambda: None
        router = Router("held")
        router.on(kind("text"))(self.answer)
        self.root = Router("root")
        self.root.include(router, build_router())

    async def answer(self, msg: Inbound) -> TextReply:
        self.on_enter()
        await self.release.wait()
        return TextReply(f"答复：{msg.text}")


async def _timed_push(client: TestClient, openid: str, text: str, msg_id: int) -> tuple[float, Any]:
    started = time.monotonic()
    answer = await push(client, PLAIN, PLAIN.text(openid, text, msg_id=msg_id))
    return time.monotonic() - started, answer


# Every answer below must come within the budget measured from the request's arrival; the
# slack only covers the test client's own round trip.
BUDGET, SLACK = 1.0, 0.2


async def test_a_slow_redis_at_the_gate_gets_the_busy_reply_within_the_budget(
    app_factory: Callable[..., Any], redis_url: str
) -> None:
    async with RedisRelay(redis_url) as relay:
        capability = HeldCapability()
        client = await app_factory(
            router=capability.root, redis_at=relay.url, reply_budget_seconds=BUDGET
        )
        await _timed_push(client, "o_budget_00001", "你好", 1)  # connected, script loaded
        relay.delay = 3.0  # longer than the pipe's own watchdog waits
        elapsed, answer = await _timed_push(client, "o_budget_00001", "你好", 2)
        relay.delay = 0.0
        await client.close()
    assert answer.reply is not None
    assert answer.reply["Content"] == copy.BUSY
    assert elapsed < BUDGET + SLACK


async def test_the_budget_runs_from_arrival_so_a_slow_gate_leaves_the_handler_less(
    app_factory: Callable[..., Any], redis_url: str, standin: WeChatStandIn
) -> None:
    async with RedisRelay(redis_url) as relay:
        capability = HeldCapability()
        client = await app_factory(
            router=capability.root, redis_at=relay.url, reply_budget_seconds=BUDGET
        )
        await _timed_push(client, "o_budget_00002", "你好", 3)  # a known member, warm pipe
        relay.delay = BUDGET / 2  # the gate takes half the budget
        capability.release.clear()  # and the handler longer than what is left

        def gate_passed() -> None:
            relay.delay = 0.0

        capability.on_enter = gate_passed
        elapsed, answer = await _timed_push(client, "o_budget_00002", "慢慢查", 4)
        capability.release.set()
        await client.app[wiring.TASKS].close(grace=5)
        await client.close()
    assert answer.body == "success"
    assert elapsed < BUDGET + SLACK
    # The reply follows as a customer-service message.
    assert standin.sent() == [
        {"touser": "o_budget_00002", "msgtype": "text", "text": {"content": "答复：慢慢查"}}
    ]


async def test_a_slow_redis_after_the_handler_does_not_hold_the_reply(
    app_factory: Callable[..., Any], redis_url: str
) -> None:
    async with RedisRelay(redis_url) as relay:
        capability = HeldCapability()
        client = await app_factory(
            router=capability.root, redis_at=relay.url, reply_budget_seconds=BUDGET
        )
        await _timed_push(client, "o_budget_00003", "你好", 5)

        def redis_slows_down() -> None:
            relay.delay = 3.0  # storing the reply for retries will not be answered in time

        capability.on_enter = redis_slows_down
        elapsed, answer = await _timed_push(client, "o_budget_00003", "查积分", 6)
        relay.delay = 0.0
        await client.close()
    assert answer.reply is not None
    assert answer.reply["Content"] == "答复：查积分"
    assert elapsed < BUDGET + SLACK
