"""Health, metrics and the request log, as an operator sees them."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import request_log, wiring
from bot.app import create_app
from bot.logs import LogfmtFormatter, mask_phone_numbers
from tests.conftest import make_config
from tests.helpers import PLAIN, push
from tests.services import free_port, redis_server


async def test_healthz_ok(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "redis_pipe": "ok",
    }


async def test_healthz_names_the_webhooks_pipe_when_it_cannot_reach_redis(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The webhook's pipe connects on its own (it once spoke plaintext to a TLS Redis while
    # redis-py spoke TLS): every member got "busy" while /healthz said ok.
    pipe = client.app[wiring.PIPE]
    await pipe.close()
    monkeypatch.setattr(pipe, "_address", {"host": "127.0.0.1", "port": free_port()})
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert (body["redis"], body["database"]) == ("ok", "ok")
    assert body["redis_pipe"] == "down: ConnectionError"


async def test_healthz_names_redis_when_it_is_down(
    aiohttp_client: Callable[..., Any],
    db_url: str,
) -> None:
    with redis_server() as own_redis:
        client = await aiohttp_client(create_app(make_config(db_url, own_redis)))
        assert (await client.get("/healthz")).status == 200
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["database"] == "ok"
    assert body["redis"].startswith("down")


async def test_healthz_names_unreachable_postgres(
    aiohttp_client: Callable[..., Any],
    redis_url: str,
) -> None:
    url = "postgresql+asyncpg://nobody@127.0.0.1:9/none"
    client = await aiohttp_client(create_app(make_config(url, redis_url)))
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["database"].startswith("down")
    assert body["redis"] == "ok"


async def test_metrics_count_requests_messages_and_dedupe_hits(client: TestClient) -> None:
    xml = PLAIN.text("o_metric_0001", "帮助", msg_id=99)
    await push(client, PLAIN, xml)
    await push(client, PLAIN, xml)
    text = await (await client.get("/metrics")).text()
    assert 'bot_http_requests_total{route="/wechat",status="200"} 2.0' in text
    assert 'bot_webhook_messages_total{outcome="replied",type="text"} 1.0' in text
    assert 'bot_webhook_messages_total{outcome="duplicate",type="text"} 1.0' in text
    assert "bot_webhook_dedupe_hits_total 1.0" in text
    assert 'bot_http_request_seconds_bucket{le="0.05",route="/wechat"}' in text


async def test_request_log_line_has_type_outcome_latency_and_no_content(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.request")
    await push(client, PLAIN, PLAIN.text("o_logged_0001", "我的手机号13812345678，查积分"))
    lines = [LogfmtFormatter().format(r) for r in caplog.records if r.name == "bot.request"]
    assert len(lines) == 1
    line = lines[0]
    for part in ("route=/wechat", "status=200", "type=text", "outcome=replied", "ms="):
        assert part in line
    assert "13812345678" not in line
    assert "查积分" not in line
    assert "o_logged_0001" not in line


def test_phone_numbers_are_masked_everywhere_in_a_line() -> None:
    record = logging.makeLogRecord(
        {"msg": "call 13812345678 or +86 15900001111", "phone": "18600002222"}
    )
    line = LogfmtFormatter().format(record)
    assert "138****5678" in line
    assert "159****1111" in line
    assert "186****2222" in line
    assert mask_phone_numbers("order 202611221234567890") == "order 202611221234567890"
    # A number-like run that is no phone number does not hide a real one later in the line.
    assert mask_phone_numbers("order 913812345678 call 13912345678") == (
        "order 913812345678 call 139****5678"
    )


@contextlib.contextmanager
def service_logging() -> Iterator[io.StringIO]:
    """The service's own logging set-up alone (``setup_logging``'s one logfmt handler), on a
    stream the test reads; pytest's capture handlers (added for each phase of a test, so this
    runs inside the test) are set aside meanwhile."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


async def test_batched_request_lines_are_all_written_on_a_clean_stop(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under the service's own logging the lines wait for a batched write; none may be lost
    # when the process stops cleanly, even if the batch's timer has not fired.
    monkeypatch.setattr(request_log, "FLUSH_AFTER", 3600)
    client = await aiohttp_client(create_app(make_config(db_url, redis_url)))
    with service_logging() as stream:
        for n in range(3):
            await push(client, PLAIN, PLAIN.text(f"o_batched_000{n}", "我的手机号13812345678"))
        assert "logger=bot.request" not in stream.getvalue()
        await client.close()
    lines = [
        line
        for line in stream.getvalue().splitlines()
        if "logger=bot.request" in line and "route=/wechat" in line
    ]
    assert len(lines) == 3
    for line in lines:
        for part in ("msg=request", "method=POST", "status=200", "type=text", "outcome=", "ms="):
            assert part in line
        assert "13812345678" not in line
        assert "o_batched" not in line


async def test_a_batched_line_is_the_line_logging_would_write() -> None:
    fields = {"method": "POST", "route": "/wechat", "status": 200, "ms": 1.5, "note": "a b"}
    with service_logging() as stream:
        lines = request_log.RequestLog()
        lines.write(fields)
        await lines.close()
        batched = stream.getvalue()
        stream.truncate(0)
        stream.seek(0)
        request_log.log.info("request", extra=fields)
        logged = stream.getvalue()
    # The same line but for the time stamp.
    assert batched.split(" ", 1)[1] == logged.split(" ", 1)[1]
    assert batched.startswith("ts=")
    assert batched.endswith("\n")
