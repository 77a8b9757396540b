"""``[server] webhook_port``: /wechat on its own listener (bot/wechat/listener.py).

The app's own tests run with the listener beside the aiohttp route, over real sockets: the
same answers, dedupe shared with the route, the same log line. The HTTP edge cases (pipelining,
``Expect``, limits, a clean stop) run against a stand-in webhook that answers when told to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from bot import wiring
from bot.logs import LogfmtFormatter
from bot.metrics import Metrics
from bot.request_log import RequestLog
from bot.wechat.listener import WebhookListener, _query
from bot.wechat.webhook import Answer
from bot.wechat.webhook_client import SignedRequest
from tests.conftest import AES_KEY
from tests.helpers import (
    PLAIN,
    SAFE,
    exchange,
    http_post,
    member_count,
    push,
    read_response,
    redis_untouched,
)
from tests.services import free_port


@pytest.fixture
async def listened(app_factory: Callable[..., Any]) -> Any:
    return await app_factory(server={"webhook_port": free_port()})


def _port(client: Any) -> int:
    return client.app[wiring.LISTENER].port


async def test_the_listener_answers_as_the_route_does(listened: Any) -> None:
    by_route = await push(listened, PLAIN, PLAIN.text("o_route_000001", "帮助"))
    request = PLAIN.sign(PLAIN.text("o_listen_00001", "帮助"))
    [(status, headers, body)] = await exchange(_port(listened), http_post(request))
    assert status == 200
    assert headers["content-type"].startswith("application/xml")
    reply = PLAIN.read_reply(body, request)
    assert reply is not None
    assert by_route.reply is not None
    assert reply["Content"] == by_route.reply["Content"]
    assert reply["ToUserName"] == "o_listen_00001"
    assert await member_count(listened) == 2


async def test_a_retry_on_the_route_replays_the_listeners_answer(listened: Any) -> None:
    request = PLAIN.sign(PLAIN.text("o_listen_00002", "积分", msg_id=777))
    [(_, _, first)] = await exchange(_port(listened), http_post(request))
    again = await listened.post("/wechat", params=request.params, data=request.body)
    assert await again.text() == first
    assert await member_count(listened) == 1


async def test_pipelined_messages_are_answered_in_order_on_one_connection(listened: Any) -> None:
    requests = [PLAIN.sign(PLAIN.text(f"o_listen_pipe{i:02d}", "帮助")) for i in range(3)]
    answers = await exchange(_port(listened), b"".join(map(http_post, requests)), answers=3)
    replies = [PLAIN.read_reply(body, r) for (_, _, body), r in zip(answers, requests, strict=True)]
    addressed = [reply["ToUserName"] for reply in replies if reply]
    assert addressed == [f"o_listen_pipe{i:02d}" for i in range(3)]


async def test_safe_mode_through_the_listener(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(server={"webhook_port": free_port()}, encoding_aes_key=AES_KEY)
    request = SAFE.sign(SAFE.text("o_listen_safe1", "帮助"))
    [(status, _, body)] = await exchange(_port(client), http_post(request))
    assert status == 200
    assert "<Encrypt>" in body
    reply = SAFE.read_reply(body, request)
    assert reply is not None
    assert reply["Content"].startswith("您好")


async def test_url_verification_echoes(listened: Any) -> None:
    params = {**PLAIN.sign("").params, "echostr": "echo-123"}
    raw = f"GET /wechat?{urlencode(params)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert (await exchange(_port(listened), raw))[0][::2] == (200, "echo-123")


async def test_a_bad_signature_is_refused_and_nothing_is_written(
    listened: Any, redis: Redis
) -> None:
    request = PLAIN.sign(PLAIN.text("o_listen_00003", "积分"))
    request.params["signature"] = "0" * 40
    [(status, _, body)] = await exchange(_port(listened), http_post(request))
    assert (status, body) == (403, "bad signature")
    assert await redis_untouched(redis)
    assert await member_count(listened) == 0


async def test_each_request_gets_the_routes_log_line(
    listened: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.request")
    await exchange(_port(listened), http_post(PLAIN.sign(PLAIN.text("o_listen_00004", "帮助"))))
    [line] = [LogfmtFormatter().format(r) for r in caplog.records if r.name == "bot.request"]
    for part in ("method=POST", "route=/wechat", "status=200", "type=text", "outcome=replied"):
        assert part in line
    assert "o_listen_00004" not in line
    assert "帮助" not in line


class _Held:
    """A stand-in webhook: answers each message with its body once ``go`` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.came = asyncio.Event()
        self.arrived = 0

    async def receive_body(
        self, query: dict[str, str], body: bytes, fields: dict[str, Any], arrived: float
    ) -> Answer:
        self.arrived += 1
        self.came.set()
        await self.go.wait()
        fields["outcome"] = "held"
        return Answer(200, body.decode())

    def verify_query(self, query: dict[str, str], fields: dict[str, Any]) -> Answer:
        return Answer(200, query.get("echostr", ""))


@pytest.fixture
async def held() -> AsyncIterator[tuple[_Held, WebhookListener]]:
    webhook = _Held()
    listener = WebhookListener(webhook, RequestLog(), Metrics(), max_body_bytes=1024)  # type: ignore[arg-type]  # a stand-in
    await listener.start("127.0.0.1", 0)
    try:
        yield webhook, listener
    finally:
        webhook.go.set()
        await listener.stop()


# A chunked body of 2 KiB, past the stand-in's 1 KiB limit with no Content-Length to tell.
CHUNKS = (b"400\r\n" + b"y" * 1024 + b"\r\n") * 2 + b"0\r\n\r\n"


def _raw(body: str, path: str = "/wechat", extra: str = "") -> bytes:
    return http_post(SignedRequest({"nonce": "1"}, body.encode()), path, extra)


async def test_a_slow_answer_holds_the_next_one_back_not_out_of_order(held: Any) -> None:
    webhook, listener = held
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(_raw("first") + _raw("second"))
    await webhook.came.wait()
    webhook.go.set()
    assert [(await read_response(reader))[2] for _ in range(2)] == ["first", "second"]
    writer.close()


async def test_expect_continue_is_answered_before_the_body(held: Any) -> None:
    webhook, listener = held
    webhook.go.set()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"POST /wechat HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    assert (await read_response(reader))[::2] == (200, "body")
    writer.close()


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (_raw("x" * 2000), 413, "body too large"),
        (
            b"POST /wechat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKS,
            413,
            "body too large",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed request"),
    ],
)
async def test_what_cannot_be_read_is_refused_and_the_connection_closed(
    held: Any, raw: bytes, status: int, reason: str
) -> None:
    webhook, listener = held
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(raw)
    code, headers, body = await read_response(reader)
    assert (code, body, headers.get("connection")) == (status, reason, "close")
    assert await reader.read() == b""  # closed
    assert webhook.arrived == 0
    writer.close()


async def test_other_paths_and_methods_are_refused(held: Any) -> None:
    webhook, listener = held
    webhook.go.set()
    raw = _raw("a", path="/console") + b"DELETE /wechat HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    answers = await exchange(listener.port, raw, answers=2)
    assert [(status, body) for status, _, body in answers] == [
        (404, "not found"),
        (405, "method not allowed"),
    ]
    assert webhook.arrived == 0


async def test_a_clean_stop_answers_what_has_arrived(held: Any) -> None:
    webhook, listener = held
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(_raw("in flight"))
    await webhook.came.wait()
    port = listener.port
    stopping = asyncio.create_task(listener.stop())
    await asyncio.sleep(0)
    with pytest.raises(ConnectionRefusedError):  # no longer listening
        await asyncio.open_connection("127.0.0.1", port)
    webhook.go.set()
    status, headers, body = await read_response(reader)
    assert (status, body, headers.get("connection")) == (200, "in flight", "close")
    await stopping
    assert await reader.read() == b""
    writer.close()


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not() -> None:
    webhook = _Held()
    webhook.go.set()
    listener = WebhookListener(
        webhook,  # type: ignore[arg-type]  # a stand-in
        RequestLog(),
        Metrics(),
        max_body_bytes=1024,
        idle_seconds=1.0,
    )
    await listener.start("127.0.0.1", 0)
    try:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", listener.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        for n in range(3):  # each answer rearms the wait, each request cancels it
            writer.write(_raw(f"request {n}"))
            assert (await read_response(reader))[2] == f"request {n}"
        assert await silent_reader.read() == b""  # closed without a request
        assert await reader.read() == b""  # closed once idle after its answers
        assert not listener.connections
        silent.close()
        writer.close()
    finally:
        await listener.stop()


@given(
    st.lists(
        st.sampled_from(["signature=ab12", "nonce=42", "&", "=", "a=1=2", "x", "%E7%A7%AF", "+"])
        | st.text(alphabet="ab=&%+;2F\u00e9", max_size=8),
        max_size=6,
    ).map("&".join)
)
@settings(max_examples=500, deadline=None)
def test_the_query_is_read_as_parse_qsl_reads_it(query: str) -> None:
    expected: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        expected.setdefault(key, value)
    assert _query(query.encode("latin-1")) == expected
