"""Members in their own words, through the real signed webhook: every intent answered with
the member's data, asking back with numbered choices, refusals, two requests in one, voice."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from messages import chat_copy, copy, handoff_copy, recap_copy, referral_copy, rewards_copy
from models.conversations import Conversation, ConversationMessage
from tests.bot.api.test_api import call, follower, order
from tests.helpers import PLAIN, push

OPENID = "o_api_member01"
FAQ = {
    "hours": {"patterns": ["营业时间", "几点开门"], "answer": "每天 10:00–22:00 营业。"},
    "delivery": {"patterns": ["发货", "快递"], "answer": "48 小时内发货。"},
}


async def say(client: TestClient, text: str, openid: str = OPENID) -> str | None:
    """Send ``text`` as the member; the reply's text (None: no reply)."""
    answer = await push(client, PLAIN, PLAIN.text(openid, text))
    assert answer.status == 200
    return answer.reply["Content"] if answer.reply else None


def voice(openid: str, recognition: str | None) -> str:
    """A voice message's XML, with WeChat's speech recognition when the account has it on."""
    recognised = f"<Recognition><![CDATA[{recognition}]]></Recognition>" if recognition else ""
    return (
        f"<xml><ToUserName><![CDATA[{PLAIN.account}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
        f"<MediaId><![CDATA[media_voice_1]]></MediaId><Format><![CDATA[amr]]></Format>"
        f"{recognised}<MsgId>{secrets.randbits(63)}</MsgId></xml>"
    )


@pytest.fixture
async def member(app_factory: Callable[..., Any]) -> TestClient:
    """A follower with one ¥100 order (100 points)."""
    client = await app_factory(chat={"faq": FAQ})
    await follower(client, OPENID)
    status, _ = await call(client, "POST", "/orders", order("U-1", amount_fen=10_000))
    assert status in (200, 201)
    return client


# (what the member types, what the reply starts with or holds)
EVERY_INTENT = [
    ("我还有多少积分", "您当前可用积分：100 分"),
    ("積分", "您当前可用积分：100 分"),
    ("jifen", "您当前可用积分：100 分"),
    ("你好，我想查积分", "您当前可用积分：100 分"),
    ("积分什么时候过期", chat_copy.EXPIRY_TITLE + "\n· 100 分将于"),
    ("积分怎么还没到账", chat_copy.ORDERS_TITLE),
    ("我是什么会员", "您当前是【普通会员】"),
    ("离钻石还差多少", "您当前是【普通会员】"),
    ("我有什么权益", "【普通会员】专享权益："),
    ("钻石会员有什么权益", "【钻石会员】专享权益："),
    ("我的优惠券", copy.COUPONS_NONE),
    ("我的年度报告", recap_copy.CHAT_NONE),
    ("我推荐了几个人", referral_copy.STATS_NONE),
    ("你能做什么", copy.HELP_TITLE),
    ("你好", chat_copy.GREETING),
    ("谢谢", chat_copy.THANKS),
    ("不用转人工", chat_copy.DECLINE),
    ("不要了谢谢", chat_copy.DECLINE),
    ("积分怎么用", rewards_copy.EMPTY.format(balance=100)),
    ("你们几点开门", "每天 10:00–22:00 营业。"),
    ("我想邀请好友", "/r/"),
    ("转人工", "人工客服"),
]


@pytest.mark.parametrize(("typed", "expected"), EVERY_INTENT, ids=[t for t, _ in EVERY_INTENT])
async def test_every_intent_is_answered_with_the_members_data(
    member: TestClient, typed: str, expected: str
) -> None:
    reply = await say(member, typed)
    assert reply is not None
    assert reply.startswith(expected) or expected in reply


async def test_the_latest_orders_show_their_points(member: TestClient) -> None:
    reply = await say(member, "积分怎么还没到账")
    assert reply is not None
    assert "订单 U-1（¥100）+100 分" in reply
    assert reply.endswith(chat_copy.ORDERS_NOTE)


async def test_two_requests_get_both_answers_in_one_reply(member: TestClient) -> None:
    reply = await say(member, "查一下积分和等级")
    assert reply is not None
    points, tier = reply.split(chat_copy.SEPARATOR)
    assert points.startswith("您当前可用积分：100 分")
    assert tier.startswith("您当前是【普通会员】")


async def test_an_unclear_message_is_asked_about_and_a_digit_answers(member: TestClient) -> None:
    # 「我的」 could be the points, the coupons, the referrals…: the bot asks.
    reply = await say(member, "我的")
    assert reply is not None
    lines = reply.splitlines()
    assert lines[0] == chat_copy.CLARIFY_TITLE
    assert lines[-1] == chat_copy.CLARIFY_FOOTER
    choices = dict(line.split(" ", 1) for line in lines[1:-1])
    assert 2 <= len(choices) <= 3
    number = next(n for n, name in choices.items() if name == chat_copy.INTENT_NAMES["points"])
    answer = await say(member, chr(ord("０") + int(number)))  # a full-width digit
    assert answer is not None
    assert answer.startswith("您当前可用积分：100 分")


async def test_a_digit_without_a_question_is_not_an_answer(member: TestClient) -> None:
    reply = await say(member, "2")
    assert reply is not None
    assert reply.startswith(chat_copy.NOT_UNDERSTOOD_TITLE)


async def test_out_of_scope_gets_the_main_things_as_choices(member: TestClient) -> None:
    reply = await say(member, "今天天气怎么样")
    assert reply is not None
    assert reply.splitlines()[0] == chat_copy.NOT_UNDERSTOOD_TITLE
    assert reply.splitlines()[1] == "1 查询积分"
    assert (await say(member, "1") or "").startswith("您当前可用积分：100 分")


async def test_a_person_only_after_the_question_back_fails_too(member: TestClient) -> None:
    first = await say(member, "今天天气怎么样")
    assert first is not None
    assert first.startswith(chat_copy.NOT_UNDERSTOOD_TITLE)
    second = await say(member, "讲个笑话")
    assert second is not None
    assert second.startswith(handoff_copy.NOT_UNDERSTOOD)


async def test_an_answer_in_between_resets_the_count(member: TestClient) -> None:
    await say(member, "今天天气怎么样")
    assert (await say(member, "积分") or "").startswith("您当前可用积分")
    again = await say(member, "讲个笑话")
    assert again is not None
    assert again.startswith(chat_copy.NOT_UNDERSTOOD_TITLE)


async def test_recognised_voice_is_understood_as_text(member: TestClient) -> None:
    answer = await push(member, PLAIN, voice(OPENID, "我的积分还有多少？"))
    assert answer.reply is not None
    assert answer.reply["Content"].startswith("您当前可用积分：100 分")


async def test_voice_without_recognition_asks_for_text(member: TestClient) -> None:
    answer = await push(member, PLAIN, voice(OPENID, None))
    assert answer.reply is not None
    assert answer.reply["Content"] == chat_copy.VOICE_UNRECOGNISED


async def test_text_from_a_member_waiting_for_a_person_goes_to_the_person(
    member: TestClient,
) -> None:
    assert "人工客服" in (await say(member, "人工") or "")
    assert await say(member, "我上周的订单少了一件") is None
    async with member.app[wiring.SESSIONS]() as session:
        stored = (
            await session.scalars(
                select(ConversationMessage.content)
                .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
                .where(ConversationMessage.direction == "in")
            )
        ).all()
    assert "我上周的订单少了一件" in stored
