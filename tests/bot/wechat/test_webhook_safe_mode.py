"""Safe (AES) mode: WECHAT.md §1.5's test vector, encrypted replies, and refused input."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import xmltodict
from redis.asyncio import Redis
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.base import BasePrpCrypto

from bot.wechat.webhook_client import SignedRequest
from tests.conftest import AES_KEY, APPID, TOKEN
from tests.helpers import PLAIN, SAFE, member_count, push, redis_untouched

VECTOR_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrs"
    "TyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+"
    "BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7"
    "vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dS"
    "hyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)
VECTOR_PARAMS = {
    "timestamp": "1411525903",
    "nonce": "461056294",
    "encrypt_type": "aes",
    "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
}


def _vector_request() -> SignedRequest:
    # The plain URL signature over (token, timestamp, nonce) for the vector's values.
    params = {**VECTOR_PARAMS, **PLAIN.sign("", timestamp=1411525903, nonce="461056294").params}
    body = (
        f"<xml><ToUserName><![CDATA[{APPID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{VECTOR_ENCRYPT}]]></Encrypt></xml>"
    )
    return SignedRequest(params, body.encode())


@pytest.fixture
async def safe_client(app_factory: Callable[..., Any]) -> Any:
    return await app_factory(encoding_aes_key=AES_KEY)


async def test_test_vector_decrypts_and_reply_is_encrypted(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(encoding_aes_key=AES_KEY, timestamp_tolerance_seconds=10**10)
    request = _vector_request()
    response = await client.post("/wechat", params=request.params, data=request.body)
    assert response.status == 200
    envelope = xmltodict.parse(await response.text())["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert envelope["Nonce"] == "461056294"
    reply = SAFE.read_reply(await response.text(), request)
    assert reply is not None
    # The vector's message is "test" from "messense": the bot's fallback, addressed back.
    assert reply["ToUserName"] == "messense"
    assert reply["Content"].startswith("抱歉")


def test_reply_encryption_matches_the_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BasePrpCrypto, "get_random_string", lambda self: "1234567890123456")
    plaintext = (
        "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>"
        "\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName>"
        "<![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903"
        "</CreateTime>\n</xml>"
    )
    envelope = xmltodict.parse(
        WeChatCrypto(TOKEN, AES_KEY, APPID).encrypt_message(plaintext, "461056294", "1411525903")
    )["xml"]
    assert envelope["MsgSignature"] == "407518b7649e86ef23978113f92d27afa9296533"
    assert envelope["Encrypt"].startswith("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaq")


async def test_round_trip_in_safe_mode(safe_client: Any) -> None:
    answer = await push(safe_client, SAFE, SAFE.text("o_safe_000001", "帮助"))
    assert answer.status == 200
    assert "<Encrypt>" in answer.body
    assert answer.reply is not None
    assert answer.reply["Content"].startswith("您好")


async def test_bad_msg_signature_is_refused(safe_client: Any, redis: Redis) -> None:
    request = SAFE.sign(SAFE.event("o_safe_000001", "subscribe"))
    request.params["msg_signature"] = "0" * 40
    response = await safe_client.post("/wechat", params=request.params, data=request.body)
    assert response.status == 403
    assert await member_count(safe_client) == 0
    assert await redis_untouched(redis)


@pytest.mark.parametrize("encrypt", ["!!!not base64!!!", "QUJD", "A" * 64])
async def test_undecryptable_encrypt_is_refused(
    safe_client: Any, redis: Redis, encrypt: str
) -> None:
    ts, nonce = str(int(time.time())), "12345"
    from wechatpy.crypto import _get_signature

    params = {
        **PLAIN.sign("", timestamp=int(ts), nonce=nonce).params,
        "encrypt_type": "aes",
        "msg_signature": _get_signature(TOKEN, ts, nonce, encrypt),
    }
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    response = await safe_client.post("/wechat", params=params, data=body.encode())
    assert response.status == 400
    assert await redis_untouched(redis)


async def test_envelope_without_encrypt_is_refused(safe_client: Any, redis: Redis) -> None:
    request = SAFE.sign(SAFE.event("o_safe_000001", "subscribe"))
    body = b"<xml><ToUserName>gh_0123456789ab</ToUserName></xml>"
    response = await safe_client.post("/wechat", params=request.params, data=body)
    assert response.status == 400
    assert await redis_untouched(redis)


async def test_message_for_another_appid_is_refused(safe_client: Any, redis: Redis) -> None:
    other = type(SAFE)(TOKEN, "wx_some_other_app", AES_KEY)
    request = other.sign(other.event("o_safe_000001", "subscribe"))
    response = await safe_client.post("/wechat", params=request.params, data=request.body)
    assert response.status == 400
    assert await member_count(safe_client) == 0


async def test_plaintext_refused_in_safe_mode_unless_allowed(
    app_factory: Callable[..., Any],
) -> None:
    strict = await app_factory(encoding_aes_key=AES_KEY)
    answer = await push(strict, PLAIN, PLAIN.text("o_safe_000001", "帮助"))
    assert answer.status == 403
    assert await member_count(strict) == 0

    lenient = await app_factory(encoding_aes_key=AES_KEY, allow_plaintext=True)
    answer = await push(lenient, PLAIN, PLAIN.text("o_safe_000002", "帮助"))
    assert answer.status == 200
    assert "<Encrypt>" not in answer.body
    assert answer.reply is not None


async def test_encrypted_push_without_configured_key_is_refused(client: Any) -> None:
    answer = await push(client, SAFE, SAFE.text("o_safe_000001", "帮助"))
    assert answer.status == 400
