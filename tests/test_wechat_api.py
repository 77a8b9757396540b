"""The async WeChat client against the stand-in: token sharing, refresh, retries, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.metrics import Metrics
from bot.wechat_api import WeChatAPIError, WeChatClient
from tests.conftest import APPID, SECRET
from tests.wechat_standin import Fault, WeChatStandIn

SEND = "/cgi-bin/message/custom/send"
TEXT = {"touser": "o_member_0001", "msgtype": "text", "text": {"content": "您好"}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(
    standin: WeChatStandIn, redis: Redis, http: aiohttp.ClientSession
) -> Callable[..., WeChatClient]:
    def make(**options: Any) -> WeChatClient:
        settings: dict[str, Any] = {
            "timeout": 1.0,
            "backoff": 0.01,
            "max_attempts": 3,
            "metrics": Metrics(),
            **options,
        }
        return WeChatClient(
            http=http,
            redis=redis,
            appid=APPID,
            secret=SECRET,
            base_url=str(standin.server.make_url("")),
            **settings,
        )

    return make


async def test_token_is_fetched_once_and_shared_through_redis(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    first, second = make_client(), make_client()  # two processes' worth of clients
    await first.send_custom_message(TEXT)
    await second.send_custom_message(TEXT)
    assert standin.token_fetches == 1
    assert len(standin.sent()) == 2


@pytest.mark.parametrize("endpoint", ["stable", "classic"])
async def test_fifty_concurrent_calls_on_an_expired_token_refresh_once(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
    endpoint: str,
) -> None:
    clients = [make_client(token_endpoint=endpoint) for _ in range(5)]
    await clients[0].send_custom_message(TEXT)
    assert standin.token_fetches == 1
    standin.expire_all_tokens()
    # The clients still hold the old token locally: every one of the 50 calls gets 42001.
    await asyncio.gather(*(clients[i % 5].send_custom_message(TEXT) for i in range(50)))
    assert standin.token_fetches == 2
    assert len(standin.sent()) == 51


async def test_invalidated_token_40001_refreshes_once_and_retries(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    client = make_client()
    await client.send_custom_message(TEXT)
    standin.invalidate_all_tokens()
    await client.send_custom_message(TEXT)
    assert standin.token_fetches == 2
    assert len(standin.sent()) == 2


async def test_stable_token_forces_refresh_when_wechat_still_hands_back_a_rejected_token(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    client = make_client()
    await client.send_custom_message(TEXT)
    rejected = standin.current
    # WeChat's view: the token is still current, yet calls with it fail with 40001.
    standin.fail_next(SEND, Fault(errcode=40001))
    await client.send_custom_message(TEXT)
    assert standin.current != rejected
    assert len(standin.sent()) == 2


async def test_token_that_keeps_failing_is_not_refreshed_forever(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    client = make_client()
    standin.fail_next(SEND, *[Fault(errcode=40001)] * 10)
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_message(TEXT)
    assert raised.value.errcode == 40001
    assert standin.token_fetches <= 3


@pytest.mark.parametrize(
    "fault",
    [Fault(errcode=-1), Fault(errcode=45009), Fault(http_status=500), Fault(http_status=502)],
)
async def test_transient_failures_are_retried(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
    fault: Fault,
) -> None:
    standin.fail_next(SEND, fault, fault)
    await make_client().send_custom_message(TEXT)
    assert len(standin.sent()) == 1


async def test_transient_failure_gives_up_after_max_attempts(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    standin.fail_next(SEND, *[Fault(errcode=45009)] * 5)
    with pytest.raises(WeChatAPIError) as raised:
        await make_client(max_attempts=3).send_custom_message(TEXT)
    assert (raised.value.errcode, raised.value.transient) == (45009, True)
    assert len(standin.faults[SEND]) == 2  # three attempts used three faults
    assert standin.sent() == []


async def test_timeout_is_retried_then_reported(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    standin.fail_next(SEND, *[Fault(delay=0.5)] * 2)
    with pytest.raises(WeChatAPIError) as raised:
        await make_client(timeout=0.2, max_attempts=2).send_custom_message(TEXT)
    assert raised.value.errcode is None
    assert raised.value.transient


async def test_permanent_error_raises_at_once_with_code_and_message(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    standin.unfollowed.add("o_member_0001")
    metrics = Metrics()
    with pytest.raises(WeChatAPIError) as raised:
        await make_client(metrics=metrics).send_custom_message(TEXT)
    assert raised.value.errcode == 43004
    assert raised.value.errmsg == "require subscribe"
    assert not raised.value.transient
    text = metrics.render()[0].decode()
    assert 'bot_wechat_api_calls_total{api="message/custom/send",errcode="43004"} 1.0' in text


async def test_wrong_secret_is_a_clear_error(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    standin.secret = "a-different-secret"
    with pytest.raises(WeChatAPIError) as raised:
        await make_client().send_custom_message(TEXT)
    assert raised.value.errcode == 40125
    assert SECRET not in str(raised.value)
