"""The webhook's own XML parse and render against wechatpy's, which they replace on the hot path.

The parse must read every message as wechatpy's ``parse_message`` (xmltodict) read it: the same
Inbound, or a refusal where it refused. The oracle below is the parse the webhook used before.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from xml.parsers.expat import ExpatError

import pytest
import xmltodict
from hypothesis import event, given, settings
from hypothesis import strategies as st
from wechatpy import parse_message

from bot.wechat import xml_codec
from bot.wechat.xml_codec import BadMessage, Parsed, parse_inbound, render_reply
from handlers.inbound import Inbound
from messages import replies

NOW = int(time.time())
HEAD = (
    "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>"
    "<FromUserName><![CDATA[o_member_000001]]></FromUserName>"
    f"<CreateTime>{NOW}</CreateTime>"
)


def _wechatpy_parse(xml: str) -> Parsed | None:
    """The webhook's parse before this change (wechatpy and xmltodict); None where it refused."""
    try:
        message = parse_message(xml)
    except (ExpatError, KeyError, TypeError, AttributeError, ValueError):
        return None
    if message is None:
        return None
    raw = message._data

    def text(value: object) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise BadMessage("not text")
        return value

    try:
        openid = text(raw.get("FromUserName"))
        created = int(raw.get("CreateTime") or 0)
        msg_id = int(raw.get("MsgId") or raw.get("MsgID") or 0)
        kind = text(raw.get("MsgType")).lower()
        if created <= 0 or (kind in {"text", "image", "voice", "link"} and not msg_id):
            return None
        inbound = Inbound(
            openid=openid,
            kind="unknown" if message.type == "unknown" else kind,
            sent_at=datetime.fromtimestamp(created, UTC),
            event=text(raw.get("Event")).lower() if kind == "event" else None,
            text=text(raw.get("Content") or raw.get("Recognition")),
            key=text(raw.get("EventKey")),
            media_id=text(raw.get("MediaId")),
            msg_id=msg_id,
            status=text(raw.get("Status")),
        )
    except (BadMessage, TypeError, ValueError):
        return None
    return Parsed(inbound, text(raw.get("ToUserName")), created, msg_id)


def _ours(xml: str) -> Parsed | None:
    try:
        return parse_inbound(xml)
    except BadMessage:
        return None


MESSAGES = [
    HEAD + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[积分]]></Content>"
    "<MsgId>1234567890123456</MsgId></xml>",
    # Whitespace around the text (xmltodict strips it), an empty text, text without CDATA.
    HEAD + "<MsgType>text</MsgType><Content>  我的券 \n</Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>text</MsgType><Content></Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>TEXT</MsgType><Content>a &amp; b &lt;c&gt;</Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>image</MsgType><PicUrl>http://x/y</PicUrl><MediaId>m1</MediaId>"
    "<MsgId>8</MsgId></xml>",
    HEAD + "<MsgType>voice</MsgType><MediaId>v1</MediaId><Format>amr</Format>"
    "<Recognition><![CDATA[查积分]]></Recognition><MsgId>9</MsgId></xml>",
    HEAD + "<MsgType>link</MsgType><Title>t</Title><Url>u</Url><MsgId>10</MsgId></xml>",
    HEAD + "<MsgType>location</MsgType><Location_X>23.1</Location_X><MsgId>11</MsgId></xml>",
    # Events: a follow, a follow by QR code (renamed, "qrscene_" cut), a product scan, a scan,
    # a click, a view, a template receipt, an event wechatpy does not know, a device event.
    HEAD + "<MsgType>event</MsgType><Event>subscribe</Event></xml>",
    HEAD + "<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_ref42</EventKey>"
    "<Ticket>t</Ticket></xml>",
    HEAD + "<MsgType>event</MsgType><Event>subscribe</Event>"
    "<EventKey>scanbarcode|x</EventKey></xml>",
    HEAD + "<MsgType>event</MsgType><Event>SCAN</Event><EventKey>ref42</EventKey></xml>",
    HEAD + "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>MENU_POINTS</EventKey></xml>",
    HEAD + "<MsgType>event</MsgType><Event>VIEW</Event><EventKey>http://x</EventKey></xml>",
    HEAD + "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>55</MsgID>"
    "<Status><![CDATA[success]]></Status></xml>",
    HEAD + "<MsgType>event</MsgType><Event>something_new</Event></xml>",
    HEAD + "<MsgType>event</MsgType><Event>unsubscribe</Event><EventKey></EventKey></xml>",
    HEAD + "<MsgType>device_text</MsgType><Content>x</Content></xml>",
    HEAD + "<MsgType>miniprogrampage</MsgType><Title>t</Title><MsgId>12</MsgId></xml>",
    # A nested field wechatpy keeps as a dict (fine unless it is one we read).
    HEAD + "<MsgType>event</MsgType><Event>scancode_push</Event><EventKey>k</EventKey>"
    "<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>1</ScanResult></ScanCodeInfo></xml>",
    # Refused by both: a field we read nested, repeated or with attributes; no MsgType; a bad
    # number; no MsgId on a message; another root; text only; not XML; empty; no CreateTime.
    HEAD + "<MsgType>text</MsgType><Content><b>x</b></Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>text</MsgType><Content>a</Content><Content>b</Content><MsgId>7</MsgId></xml>",
    HEAD + '<MsgType>text</MsgType><Content lang="zh">a</Content><MsgId>7</MsgId></xml>',
    HEAD + "<Content>a</Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>text</MsgType><Content>a</Content><MsgId>seven</MsgId></xml>",
    HEAD + "<MsgType>text</MsgType><Content>a</Content></xml>",
    HEAD + "<MsgType></MsgType><Content>a</Content><MsgId>7</MsgId></xml>",
    HEAD + "<MsgType>event</MsgType><Event></Event></xml>",
    HEAD.replace("<xml>", "<msg>") + "<MsgType>text</MsgType><MsgId>7</MsgId></msg>",
    "<xml>just text</xml>",
    "<xml><ToUserName>gh</ToUserName>",
    "not xml",
    "",
    (
        "<xml><FromUserName>o_member_000001</FromUserName><MsgType>text</MsgType>"
        "<Content>a</Content><MsgId>7</MsgId></xml>"
    ),
]


@pytest.mark.parametrize("xml", MESSAGES)
def test_parse_reads_each_message_as_wechatpy_did(xml: str) -> None:
    assert _ours(xml) == _wechatpy_parse(xml)


def test_the_corpus_has_messages_read_and_refused() -> None:
    outcomes = [_ours(xml) is None for xml in MESSAGES]
    assert outcomes.count(True) >= 10
    assert outcomes.count(False) >= 15


def test_a_qr_code_follow_is_renamed_and_its_scene_cut() -> None:
    parsed = parse_inbound(MESSAGES[9])
    assert (parsed.inbound.event, parsed.inbound.key) == ("subscribe_scan", "ref42")


@pytest.mark.parametrize(
    "reply",
    [
        replies.TextReply("您的积分：100\n第二行 & <b>"),
        replies.TextReply("a ]]> b ]]]]> c"),
        replies.ImageReply("media-1"),
        replies.TransferToCustomerService("kf001@gh"),
        replies.TransferToCustomerService(None),
    ],
)
def test_render_gives_what_wechat_reads(reply: replies.Reply) -> None:
    fields = xmltodict.parse(render_reply(reply, "o_member_000001", "gh_0123456789ab"))["xml"]
    assert fields["ToUserName"] == "o_member_000001"
    assert fields["FromUserName"] == "gh_0123456789ab"
    assert abs(int(fields["CreateTime"]) - time.time()) < 5
    match reply:
        case replies.TextReply(text=text):
            assert (fields["MsgType"], fields["Content"]) == ("text", text)
        case replies.ImageReply(media_id=media_id):
            assert (fields["MsgType"], fields["Image"]["MediaId"]) == ("image", media_id)
        case replies.TransferToCustomerService(kf_account=kf):
            assert fields["MsgType"] == "transfer_customer_service"
            assert (fields.get("TransInfo") or {}).get("KfAccount") == kf


# Pieces a message is built of: WeChat's own (plain text, one CDATA section, empty), mostly,
# and every form the patterns must leave to ElementTree, so that each example has something to
# get wrong. Characters XML reads otherwise (\r, entities, "]]>", forbidden ones) are mixed in.
_NAMES = st.sampled_from(["Content", "MsgType", "MsgId", "Content", "A.b", "x-1", "_y", "中文"])
_ORDINARY = [*"ab积分 \t\n>]", "\u3000"]
_UNLIKE = ["\r", "&", "<", "\x01", "&amp;", "]]>", "\ud800"]
_TEXT = st.one_of(
    st.lists(st.sampled_from(_ORDINARY), max_size=8),
    st.lists(st.sampled_from(_ORDINARY + _UNLIKE), max_size=8),
).map("".join)
_WECHAT_CHILD = st.one_of(
    st.builds(lambda n, t: f"<{n}>{t}</{n}>", _NAMES, _TEXT),
    st.builds(lambda n, t: f"<{n}><![CDATA[{t}]]></{n}>", _NAMES, _TEXT),
)
_OTHER_CHILD = st.one_of(
    st.builds(lambda n, t: f"<{n}> <![CDATA[{t}]]></{n}>", _NAMES, _TEXT),
    st.builds(lambda n, a, b: f"<{n}><![CDATA[{a}]]><![CDATA[{b}]]></{n}>", _NAMES, _TEXT, _TEXT),
    st.builds(lambda n: f"<{n}/>", _NAMES),
    st.builds(lambda n, t: f'<{n} a="1">{t}</{n}>', _NAMES, _TEXT),
    st.builds(lambda n, t: f"<{n}><b>{t}</b></{n}>", _NAMES, _TEXT),
    st.builds(lambda t: f"<!--{t}-->", _TEXT),
    st.builds(lambda n, t: f"<{n}>{t}</{n}x>", _NAMES, _TEXT),
    _TEXT,
)
_SPACE = st.sampled_from(["", "", "", " ", "\n  ", "\r\n", "\t", "\u3000"])


@st.composite
def _documents(draw: st.DrawFn) -> str:
    children = []
    for _ in range(draw(st.integers(0, 6))):
        other = draw(st.integers(0, 5)) == 0
        children.append(draw(_SPACE) + draw(_OTHER_CHILD if other else _WECHAT_CHILD))
    head = draw(st.sampled_from(["<xml>"] * 4 + [" <xml>", '<?xml version="1.0"?><xml>', "<xm>"]))
    tail = draw(st.sampled_from(["</xml>"] * 4 + ["</xml>\n", "</xml>junk", "", "</xm>"]))
    return head + "".join(children) + draw(_SPACE) + tail


@given(_documents())
@settings(max_examples=3000, deadline=None)
def test_the_patterns_read_a_message_as_elementtree_or_leave_it_to_it(xml: str) -> None:
    flat = xml_codec._flat_fields(xml)
    event("read by the patterns" if flat is not None else "left to ElementTree")
    if flat is not None:
        assert flat == xml_codec._tree_fields(xml)


def test_wechats_own_layout_is_read_by_the_patterns() -> None:
    # The everyday message, as WeChat sends it (and as WECHAT.md shows it, with line breaks).
    assert xml_codec._flat_fields(MESSAGES[0]) == xml_codec._tree_fields(MESSAGES[0])
    spaced = re.sub(r"(</\w+>|<xml>)", r"\1\n  ", MESSAGES[0])
    assert xml_codec._flat_fields(spaced) == xml_codec._tree_fields(spaced)
    assert xml_codec._flat_fields(MESSAGES[0])["Content"] == "积分"
