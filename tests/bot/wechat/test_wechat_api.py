"""The async WeChat client against the stand-in: token sharing, refresh, retries, typed errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import segno
from redis.asyncio import Redis

from bot.metrics import Metrics
from bot.wechat.client import QrCode, WeChatAPIError, WeChatClient
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
            "base_url": str(standin.server.make_url("")),
            # A ceiling for a loaded machine (50 concurrent calls must fit in it); the tests of
            # unanswered calls set a short one, against a longer delay.
            "timeout": 30.0,
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


async def test_an_unanswered_message_is_not_sent_again(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    # WeChat is slow: it acts on the request after the client has stopped waiting.
    standin.fail_next(SEND, Fault(delay=3.0), Fault(delay=3.0))
    with pytest.raises(WeChatAPIError) as raised:
        await make_client(timeout=1.0, max_attempts=3).send_custom_message(TEXT)
    assert (raised.value.errcode, raised.value.unanswered) == (None, True)
    await asyncio.sleep(0.6)
    assert len(standin.sent()) == 1  # delivered once, by the one attempt made
    assert len(standin.faults[SEND]) == 1


async def test_an_unanswered_call_that_sends_nothing_is_retried(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    standin.fail_next("/cgi-bin/qrcode/create", Fault(delay=3.0))
    code = await make_client(timeout=1.0, max_attempts=2).create_qr_code("ref_abc", 3600)
    assert code.ticket


async def test_a_refused_connection_is_not_taken_for_unanswered(
    make_client: Callable[..., WeChatClient],
) -> None:
    # Nothing listens on port 9: the first call (for the token) cannot connect.
    client = make_client(max_attempts=1, base_url="http://127.0.0.1:9")
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_message(TEXT)
    assert (raised.value.transient, raised.value.unanswered) == (True, False)


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


QR = "/cgi-bin/qrcode/create"
UPLOAD = "/cgi-bin/media/upload"


def qr_png(data: str = "https://example.com") -> bytes:
    buffer = io.BytesIO()
    segno.make(data).save(buffer, kind="png", scale=4)
    return buffer.getvalue()


async def test_qr_code_sends_the_documented_body_and_returns_ticket_and_url(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    code = await make_client().create_qr_code("invite:o_member_0001", 7 * 86_400)
    assert standin.sent(QR) == [
        {
            "expire_seconds": 604_800,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": "invite:o_member_0001"}},
        }
    ]
    assert isinstance(code, QrCode)
    assert standin.qr_scenes == {code.ticket: "invite:o_member_0001"}
    assert code.url.startswith("http://weixin.qq.com/q/")
    assert code.expire_seconds == 604_800


@pytest.mark.parametrize(
    ("scene", "seconds"),
    [("", 60), ("x" * 65, 60), ("x", 59), ("x", 2_592_001)],
)
async def test_invalid_qr_code_arguments_raise_before_calling_wechat(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
    scene: str,
    seconds: int,
) -> None:
    with pytest.raises(ValueError, match=r"scene_str|expire_seconds"):
        await make_client().create_qr_code(scene, seconds)
    assert standin.token_fetches == 0
    assert standin.calls == []


@pytest.mark.parametrize("lose_token", ["expire_all_tokens", "invalidate_all_tokens"])
async def test_qr_code_refreshes_a_rejected_token_once_and_retries(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
    lose_token: str,
) -> None:
    client = make_client()
    await client.create_qr_code("first", 60)
    getattr(standin, lose_token)()
    code = await client.create_qr_code("second", 60)
    assert standin.token_fetches == 2
    assert [body["action_info"]["scene"]["scene_str"] for body in standin.sent(QR)] == [
        "first",
        "second",
    ]
    assert standin.qr_scenes[code.ticket] == "second"


async def test_image_upload_round_trips_the_bytes(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    png = qr_png()
    media_id = await make_client().upload_temporary_image(png)
    assert standin.media == {media_id: png}
    (call,) = [c for c in standin.calls if c.path == UPLOAD]
    assert call.params == {"type": "image"}
    assert call.body == {
        "media": {"filename": "qr.png", "content_type": "image/png", "size": len(png)}
    }


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(errcode=-1)],
        [Fault(errcode=45009), Fault(http_status=502)],
        [Fault(errcode=40001)],  # token refresh path: call() builds the form again too
    ],
)
async def test_image_upload_retry_resends_the_whole_multipart_body(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
    monkeypatch: pytest.MonkeyPatch,
    faults: list[Fault],
) -> None:
    built: list[aiohttp.FormData] = []

    class RecordedFormData(aiohttp.FormData):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(aiohttp, "FormData", RecordedFormData)
    png = qr_png("https://example.com/retry")
    standin.fail_next(UPLOAD, *faults)
    media_id = await make_client().upload_temporary_image(png, filename="retry.png")
    assert not standin.faults[UPLOAD]  # every fault was met by an attempt
    assert len(built) == len(faults) + 1  # a fresh body for every attempt
    assert standin.media == {media_id: png}
    assert standin.calls[-1].body == {
        "media": {"filename": "retry.png", "content_type": "image/png", "size": len(png)}
    }


async def test_non_image_upload_is_refused_with_40005(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    with pytest.raises(WeChatAPIError) as raised:
        await make_client().upload_temporary_image(b"%PDF-1.7 not an image")
    assert (raised.value.errcode, raised.value.transient) == (40005, False)
    assert standin.media == {}


async def test_oversize_or_empty_image_raises_before_calling_wechat(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    client = make_client()
    for content in (qr_png() + b"\0" * (10 * 1024 * 1024), b""):
        with pytest.raises(ValueError, match="image must be"):
            await client.upload_temporary_image(content)
    assert standin.token_fetches == 0


async def test_custom_image_message_needs_an_uploaded_media_id(
    make_client: Callable[..., WeChatClient],
    standin: WeChatStandIn,
) -> None:
    client = make_client()
    image = {"touser": "o_member_0001", "msgtype": "image", "image": {"media_id": "made-up"}}
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_message(image)
    assert (raised.value.errcode, raised.value.errmsg) == (40007, "invalid media_id")
    assert standin.sent() == []

    media_id = await client.upload_temporary_image(qr_png())
    await client.send_custom_message({**image, "image": {"media_id": media_id}})
    assert standin.sent() == [{**image, "image": {"media_id": media_id}}]
