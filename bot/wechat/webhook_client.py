"""Speaks to our webhook as WeChat does: signed, and encrypted in safe mode.

Used by ``python -m bot chat``, the tests and the benchmarks, so all three exercise the real
protocol path rather than a shortcut into the handlers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """Query parameters and body for one ``POST /wechat``."""

    params: dict[str, str]
    body: bytes


def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


class WebhookClient:
    """Builds WeChat-shaped pushes for one official account and reads its replies."""

    def __init__(
        self, token: str, appid: str, encoding_aes_key: str = "", account: str = "gh_0123456789ab"
    ) -> None:
        self.token = token
        self.account = account
        self.crypto = WeChatCrypto(token, encoding_aes_key, appid) if encoding_aes_key else None

    def text(
        self, openid: str, content: str, msg_id: int | None = None, created: int | None = None
    ) -> str:
        """A text message's XML."""
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
            f"<MsgId>{msg_id or secrets.randbits(63)}</MsgId></xml>"
        )

    def image(self, openid: str, media_id: str, msg_id: int | None = None) -> str:
        """An image message's XML (WeChat keeps the picture; we get its media id)."""
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[http://mmbiz.qpic.cn/{media_id}]]></PicUrl>"
            f"<MediaId><![CDATA[{media_id}]]></MediaId>"
            f"<MsgId>{msg_id or secrets.randbits(63)}</MsgId></xml>"
        )

    def event(
        self,
        openid: str,
        event: str,
        key: str | None = None,
        created: int | None = None,
        extra: str = "",
    ) -> str:
        """An event's XML (``event`` as WeChat spells it: subscribe, CLICK, SCAN, …)."""
        key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>"
            f"{key_xml}{extra}</xml>"
        )

    def sign(
        self, xml: str, timestamp: int | None = None, nonce: str | None = None, openid: str = ""
    ) -> SignedRequest:
        """Sign (and in safe mode encrypt) ``xml`` as WeChat would deliver it."""
        ts = str(timestamp or int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        params = {"signature": _sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce}
        if openid:
            params["openid"] = openid
        if self.crypto is None:
            return SignedRequest(params, xml.encode())
        envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, ts))["xml"]
        params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
        body = (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
            f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
        )
        return SignedRequest(params, body.encode())

    def read_reply(self, body: str, request: SignedRequest) -> dict[str, str] | None:
        """The reply's fields (decrypted in safe mode), or None for ``success``/empty."""
        if body in ("", "success"):
            return None
        if self.crypto is not None and "encrypt_type" in request.params:
            envelope = xmltodict.parse(body)["xml"]
            body = self.crypto.decrypt_message(
                body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
            )
        return dict(xmltodict.parse(body)["xml"])
