"""bot/wechat/safe_mode.py against wechatpy's WeChatCrypto and WECHAT.md §1.5's test vector."""

from __future__ import annotations

import base64

import pytest
import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from bot.wechat.safe_mode import EnvelopeError, SafeMode, signature
from tests.bot.wechat.test_webhook_safe_mode import VECTOR_ENCRYPT, VECTOR_PARAMS
from tests.conftest import AES_KEY, APPID, TOKEN

MESSAGE = (
    "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>"
    "<FromUserName><![CDATA[o_member_0001]]></FromUserName><CreateTime>1700000000</CreateTime>"
    "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[积分还有多少]]></Content>"
    "<MsgId>1234567890123456</MsgId></xml>"
)
SAFE = SafeMode(TOKEN, AES_KEY, APPID)
WECHATPY = WeChatCrypto(TOKEN, AES_KEY, APPID)


def _envelope(encrypt: str) -> bytes:
    return (
        f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    )


def test_the_vector_opens() -> None:
    xml = SAFE.open(
        _envelope(VECTOR_ENCRYPT),
        VECTOR_PARAMS["msg_signature"],
        VECTOR_PARAMS["timestamp"],
        VECTOR_PARAMS["nonce"],
    )
    assert xmltodict.parse(xml)["xml"]["FromUserName"] == "messense"


def test_a_sealed_reply_is_the_vectors_with_its_prefix() -> None:
    plaintext = (
        "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>"
        "\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName>"
        "<![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903"
        "</CreateTime>\n</xml>"
    )
    sealed = SAFE.seal(plaintext, "461056294", "1411525903", prefix="1234567890123456")
    envelope = xmltodict.parse(sealed)["xml"]
    assert envelope["MsgSignature"] == "407518b7649e86ef23978113f92d27afa9296533"
    assert envelope["Encrypt"].startswith("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaq")
    assert (envelope["TimeStamp"], envelope["Nonce"]) == ("1411525903", "461056294")


def test_wechatpy_opens_what_is_sealed_and_the_other_way_round() -> None:
    ours = xmltodict.parse(SAFE.seal(MESSAGE, "nonce1", "1700000000"))["xml"]
    assert WECHATPY.decrypt_message(ours, ours["MsgSignature"], "1700000000", "nonce1") == MESSAGE
    theirs = WECHATPY.encrypt_message(MESSAGE, "nonce2", "1700000001")
    sig = xmltodict.parse(theirs)["xml"]["MsgSignature"]
    assert SAFE.open(theirs.encode(), sig, "1700000001", "nonce2") == MESSAGE


def test_each_reply_draws_a_fresh_prefix() -> None:
    first, second = (
        xmltodict.parse(SAFE.seal(MESSAGE, "n", "1"))["xml"]["Encrypt"] for _ in range(2)
    )
    assert first != second
    plain = PrpCrypto(WECHATPY.key).cipher.decrypt(base64.b64decode(first))
    assert plain[:16].isascii()


def test_an_envelope_in_another_layout_is_read_as_xml() -> None:
    encrypt = xmltodict.parse(SAFE.seal(MESSAGE, "n", "1"))["xml"]["Encrypt"]
    body = f"<xml>\n  <Encrypt>{encrypt}</Encrypt>\n</xml>".encode()
    assert SAFE.open(body, signature(TOKEN, "1", "n", encrypt), "1", "n") == MESSAGE


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml><ToUserName>gh</ToUserName></xml>", "Encrypt missing"),
        (b"<xml><Encrypt>", "cannot decrypt (ParseError)"),
    ],
)
def test_an_envelope_without_its_part_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as refused:
        SAFE.open(body, "0" * 40, "1", "n")
    assert (refused.value.reason, refused.value.signature) == (reason, False)


def test_a_wrong_signature_is_refused_before_decrypting() -> None:
    encrypt = xmltodict.parse(SAFE.seal(MESSAGE, "n", "1"))["xml"]["Encrypt"]
    with pytest.raises(EnvelopeError) as refused:
        SAFE.open(_envelope(encrypt), signature(TOKEN, "2", "n", encrypt), "1", "n")
    assert refused.value.signature


@pytest.mark.parametrize("encrypt", ["!!!not base64!!!", "QUJD", "A" * 64, "A" * 44])
def test_what_does_not_decrypt_is_refused(encrypt: str) -> None:
    with pytest.raises(EnvelopeError) as refused:
        SAFE.open(_envelope(encrypt), signature(TOKEN, "1", "n", encrypt), "1", "n")
    assert refused.value.reason.startswith("cannot decrypt")
    assert not refused.value.signature


def test_a_message_for_another_appid_is_refused() -> None:
    other = SafeMode(TOKEN, AES_KEY, "wx_some_other_app")
    encrypt = xmltodict.parse(other.seal(MESSAGE, "n", "1"))["xml"]["Encrypt"]
    with pytest.raises(EnvelopeError, match="another appid"):
        SAFE.open(_envelope(encrypt), signature(TOKEN, "1", "n", encrypt), "1", "n")


def test_a_key_of_the_wrong_length_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="43 characters"):
        SafeMode(TOKEN, AES_KEY[:40], APPID)
