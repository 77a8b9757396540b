"""The webhook's XML: parsing WeChat's pushes into Inbound values, rendering passive replies."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.parsers.expat import ExpatError

from wechatpy import parse_message
from wechatpy.messages import BaseMessage
from wechatpy.replies import ArticlesReply, ImageReply, TextReply

from handlers.inbound import Inbound
from messages import replies


class BadMessage(ValueError):
    """The body is not a WeChat message we can read."""


# WeChat's openids: 28 characters of base64url in practice; allow some room, nothing else.
_OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")
# What members send (each with a MsgId); events carry none, or a MsgID of their own.
_USER_MESSAGES = frozenset({"text", "image", "voice", "video", "shortvideo", "location", "link"})


def reject_declarations(body: bytes) -> None:
    """WeChat never sends a DTD; refusing one rules out entity-expansion and XXE tricks."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadMessage("XML declarations are not accepted")


def _text(raw: object, name: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise BadMessage(f"{name} is not text")
    return raw


@dataclass(frozen=True, slots=True)
class Parsed:
    """An inbound message and the protocol fields the webhook keeps to itself."""

    inbound: Inbound
    account: str  # ToUserName, the official account's gh_ id
    created: int  # CreateTime, epoch seconds
    msg_id: int  # MsgId (MsgID on some events); 0 when absent


def parse_inbound(xml: str) -> Parsed:
    """Parse a plaintext WeChat push; raise BadMessage when it is not one."""
    try:
        message: BaseMessage = parse_message(xml)
    except (ExpatError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadMessage(f"not a WeChat message ({type(exc).__name__})") from None
    if message is None:
        raise BadMessage("empty body")
    raw = message._data
    openid = _text(raw.get("FromUserName"), "FromUserName")
    if not _OPENID.fullmatch(openid):
        raise BadMessage("FromUserName is not an openid")
    try:
        created = int(raw.get("CreateTime") or 0)
        msg_id = int(raw.get("MsgId") or raw.get("MsgID") or 0)
    except (TypeError, ValueError):
        raise BadMessage("CreateTime or MsgId is not a number") from None
    if created <= 0:
        raise BadMessage("CreateTime is missing")
    kind = _text(raw.get("MsgType"), "MsgType").lower()
    if kind in _USER_MESSAGES and not msg_id:
        raise BadMessage("a member's message without MsgId")
    account = _text(raw.get("ToUserName"), "ToUserName")
    inbound = Inbound(
        openid=openid,
        # Types wechatpy does not know are answered "success" and logged by the webhook.
        kind="unknown" if message.type == "unknown" else kind,
        sent_at=datetime.fromtimestamp(created or time.time(), UTC),
        # wechatpy has already renamed a QR-code follow to subscribe_scan and cut "qrscene_".
        event=_text(raw.get("Event"), "Event").lower() if kind == "event" else None,
        text=_text(raw.get("Content") or raw.get("Recognition"), "Content"),
        key=_text(raw.get("EventKey"), "EventKey"),
        media_id=_text(raw.get("MediaId"), "MediaId"),
        msg_id=msg_id,
        status=_text(raw.get("Status"), "Status"),
    )
    return Parsed(inbound, account, created, msg_id)


def render_reply(reply: replies.Reply, openid: str, account: str) -> str:
    """The passive-reply XML for ``reply`` to ``openid`` from the account ``account``."""
    header = {"source": account, "target": openid, "time": int(time.time())}
    match reply:
        case replies.TextReply(text=text):
            return TextReply(content=text, **header).render()
        case replies.ImageReply(media_id=media_id):
            return ImageReply(media_id=media_id, **header).render()
        case replies.NewsReply(article=a):
            return ArticlesReply(
                articles=[
                    {
                        "title": a.title,
                        "description": a.description,
                        "image": a.image_url,
                        "url": a.url,
                    }
                ],
                **header,
            ).render()
        case replies.TransferToCustomerService(kf_account=kf):
            # wechatpy's TransferCustomerServiceReply has no TransInfo, so render it here.
            trans = f"<TransInfo><KfAccount><![CDATA[{kf}]]></KfAccount></TransInfo>" if kf else ""
            return (
                f"<xml><ToUserName><![CDATA[{openid}]]></ToUserName>"
                f"<FromUserName><![CDATA[{account}]]></FromUserName>"
                f"<CreateTime>{header['time']}</CreateTime>"
                f"<MsgType><![CDATA[transfer_customer_service]]></MsgType>{trans}</xml>"
            )
    raise TypeError(f"cannot render {type(reply).__name__}")
