"""The webhook's XML: parsing WeChat's pushes into Inbound values, rendering passive replies.

Both run once per message, so both avoid wechatpy's general machinery (xmltodict, reply
fields) for what WeChat actually sends and what we answer most: the parse reads the flat
message with ElementTree's C parser as wechatpy's ``parse_message`` would (its tables of known
types, its renames), text and image replies are one template each. wechatpy still does the
URL signature and the rarer news reply; safe mode's envelope is bot/wechat/safe_mode.py's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree

from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES
from wechatpy.replies import ArticlesReply

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


_NOT_TEXT = object()  # a field with children, attributes or repeated: no message's text


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


# The layout WeChat sends: ``<xml>`` and flat children, each empty, plain text or one CDATA
# section. Read by these patterns, such a message costs about half of expat building a tree; any
# other layout (attributes, nesting, entities, comments, a declaration, several CDATA sections,
# a carriage return, a character XML forbids) goes to ElementTree, which reads it or refuses it.
_ROOT = re.compile(r"[ \t\n]*<xml>")
_CHILD = re.compile(
    r"[ \t\n]*<([A-Za-z_][A-Za-z0-9_.-]*)>(?:<!\[CDATA\[(.*?)\]\]>|([^<&]*))</\1>", re.DOTALL
)
_END = re.compile(r"[ \t\n]*</xml>[ \t\n]*")
# What the patterns would read otherwise than an XML parser: line ends (XML turns \r\n into
# \n) and characters XML does not allow. (So would "]]>" in a value: checked per value.)
_UNLIKE_XML = re.compile(r"[\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _flat_fields(xml: str) -> dict[str, object] | None:
    """``_fields`` of a message in WeChat's own layout, or None for any other layout."""
    start = _ROOT.match(xml)
    if start is None or _UNLIKE_XML.search(xml) is not None:
        return None
    fields: dict[str, object] = {}
    pos = start.end()
    child = _CHILD.match(xml, pos)
    while child is not None:
        tag, cdata, text = child.groups()
        value = cdata if text is None else text
        if "]]>" in value:
            return None
        fields[tag] = _NOT_TEXT if tag in fields else (value.strip() or None)
        pos = child.end()
        child = _CHILD.match(xml, pos)
    if _END.fullmatch(xml, pos) is None:
        return None
    return fields


def _tree_fields(xml: str) -> dict[str, object]:
    """``_fields`` by ElementTree's C parser (expat), for any layout; ParseError if not XML."""
    parser = ElementTree.XMLParser(encoding="utf-8")  # the body's bytes were checked as UTF-8
    parser.feed(xml.encode())
    root = parser.close()
    if root.tag != "xml":
        raise BadMessage("not a WeChat message (root is not xml)")
    fields: dict[str, object] = {}
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if len(child) or child.attrib or tag in fields:
            fields[tag] = _NOT_TEXT
        else:
            fields[tag] = (child.text or "").strip() or None
    return fields


def _fields(xml: str) -> dict[str, object]:
    """The children of WeChat's flat ``<xml>`` root: name to stripped text (None when empty),
    or ``_NOT_TEXT`` for a child with children or attributes, or given twice.

    Read as xmltodict (wechatpy's parse) read them: whitespace around text stripped, CDATA as
    text. The caller has refused DTDs already, so no entity is declared.
    """
    fields = _flat_fields(xml)
    return _tree_fields(xml) if fields is None else fields


def _classify(fields: dict[str, object]) -> tuple[str, str | None, bool]:
    """MsgType and the event as wechatpy's ``parse_message`` reads them (its renames of a
    QR-code follow included, ``fields`` changed to match), and whether wechatpy knows the type.
    wechatpy's own tables decide which types are known."""
    kind = fields.get("MsgType")
    if not isinstance(kind, str):
        raise BadMessage("MsgType is missing or not text")
    kind = kind.lower()
    if kind != "event" and not kind.startswith("device_"):
        return kind, None, kind in MESSAGE_TYPES
    event = None
    if "Event" in fields:
        raw_event = fields["Event"]
        if not isinstance(raw_event, str):
            raise BadMessage("Event is empty or not text")
        event = raw_event.lower()
    if kind.startswith("device_"):
        event = kind if event is None else f"device_{event}"
    key = fields.get("EventKey")
    if event == "subscribe" and isinstance(key, str) and key:
        if key.startswith(("scanbarcode|", "scanimage|")):
            event = fields["Event"] = "subscribe_scan_product"
        elif key.startswith("qrscene_"):
            event = fields["Event"] = "subscribe_scan"
            fields["EventKey"] = key[len("qrscene_") :]
    return kind, event, event in EVENT_TYPES


def _moment(created: int) -> datetime:
    try:
        return datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadMessage("CreateTime is out of range") from None


def parse_inbound(xml: str) -> Parsed:
    """Parse a plaintext WeChat push; raise BadMessage when it is not one."""
    if not xml:
        raise BadMessage("empty body")
    try:
        raw = _fields(xml)
    except ElementTree.ParseError as exc:
        raise BadMessage(f"not a WeChat message ({type(exc).__name__})") from None
    kind, _, known = _classify(raw)
    openid = _text(raw.get("FromUserName"), "FromUserName")
    if not _OPENID.fullmatch(openid):
        raise BadMessage("FromUserName is not an openid")
    try:
        created = int(_text(raw.get("CreateTime"), "CreateTime") or 0)
        msg_id = int(_text(raw.get("MsgId") or raw.get("MsgID"), "MsgId") or 0)
    except ValueError:
        raise BadMessage("CreateTime or MsgId is not a number") from None
    if created <= 0:
        raise BadMessage("CreateTime is missing")
    if kind in _USER_MESSAGES and not msg_id:
        raise BadMessage("a member's message without MsgId")
    account = _text(raw.get("ToUserName"), "ToUserName")
    inbound = Inbound(
        openid=openid,
        # Types wechatpy does not know are answered "success" and logged by the webhook.
        kind=kind if known else "unknown",
        sent_at=_moment(created),
        event=_text(raw.get("Event"), "Event").lower() if kind == "event" else None,
        text=_text(raw.get("Content") or raw.get("Recognition"), "Content"),
        key=_text(raw.get("EventKey"), "EventKey"),
        media_id=_text(raw.get("MediaId"), "MediaId"),
        msg_id=msg_id,
        status=_text(raw.get("Status"), "Status"),
    )
    return Parsed(inbound, account, created, msg_id)


def _cdata(text: str) -> str:
    # "]]>" would end the section early: split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _head(openid: str, account: str, kind: str) -> str:
    return (
        f"<xml><ToUserName>{_cdata(openid)}</ToUserName>"
        f"<FromUserName>{_cdata(account)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{_cdata(kind)}</MsgType>"
    )


def render_reply(reply: replies.Reply, openid: str, account: str) -> str:
    """The passive-reply XML for ``reply`` to ``openid`` from the account ``account``."""
    match reply:
        case replies.TextReply(text=text):
            # The two everyday replies as one f-string: wechatpy's field machinery cost more
            # than the rest of the rendering.
            return f"{_head(openid, account, 'text')}<Content>{_cdata(text)}</Content></xml>"
        case replies.ImageReply(media_id=media_id):
            return (
                f"{_head(openid, account, 'image')}"
                f"<Image><MediaId>{_cdata(media_id)}</MediaId></Image></xml>"
            )
        case replies.NewsReply(article=a):
            header = {"source": account, "target": openid, "time": int(time.time())}
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
            trans = f"<TransInfo><KfAccount>{_cdata(kf)}</KfAccount></TransInfo>" if kf else ""
            return f"{_head(openid, account, 'transfer_customer_service')}{trans}</xml>"
    raise TypeError(f"cannot render {type(reply).__name__}")
