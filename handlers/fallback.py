"""The last router: what nothing else understood gets a question back, never a dead end.

When the understanding step had likely intents in mind, the member is asked to pick one by
number (「您是想：1 查询积分 2 查看会员等级 3 转人工客服」); when it had none, the same numbered
question offers the main things the bot does. A person is brought in only when the message
after such a question is not understood either (or when the member picks 转人工客服). Every
such message is kept for the console's misses page (models/misses.py).
A recognised voice message is understood as text by the dispatcher; one without WeChat's
recognition is answered with a request to type.
"""

from __future__ import annotations

from handlers import clarify
from handlers.handoff import hand_over
from handlers.help import help_text
from handlers.inbound import Inbound
from handlers.router import Router, kind
from handlers.understanding.normalise import normalise
from messages import chat_copy, copy, handoff_copy
from messages.replies import Reply, TextReply
from models.base import utcnow
from models.misses import record_miss

router = Router("fallback")
# Texts in a row the bot did not understand (read by the webhook's gate); the dispatcher clears
# it when anything else answers. The first is asked about; the second hands over to a person.
STREAK_KEY = "fallback:streak:{openid}"
STREAK_TTL = 600
HAND_OVER_AFTER = 2


@router.on(kind("text"))
async def not_understood(msg: Inbound) -> Reply:
    """Ask back with numbered choices; when the previous message was asked about already,
    hand the member to a person."""
    key = STREAK_KEY.format(openid=msg.openid)
    redis = msg.svc.redis
    msg.keeps_streak = True
    if msg.member_id is not None:  # kept for the console's misses page, to be taught
        normal = msg.understood.text if msg.understood is not None else normalise(msg.text).text
        await record_miss(msg.db, normal, msg.member_id, msg.text, utcnow())
    if msg.not_understood + 1 >= HAND_OVER_AFTER:
        await redis.delete(key)
        return await hand_over(msg, "not_understood", lead=handoff_copy.NOT_UNDERSTOOD)
    await redis.set(key, msg.not_understood + 1, ex=STREAK_TTL)
    likely = msg.understood.choices if msg.understood is not None else ()
    offered = [name for name in likely if name in msg.svc.capabilities]
    title = chat_copy.CLARIFY_TITLE
    if not offered:
        offered = [name for name in chat_copy.MENU_CHOICES if name in msg.svc.capabilities]
        title = chat_copy.NOT_UNDERSTOOD_TITLE
    if not offered:
        return TextReply(f"{copy.FALLBACK}\n\n{help_text(msg)}")
    await clarify.offer(msg, offered)
    names = [chat_copy.INTENT_NAMES.get(name, name) for name in offered]
    return TextReply(chat_copy.choices(title, names))


@router.on(kind("voice"))
async def voice_not_recognised(msg: Inbound) -> TextReply:
    """A voice message without WeChat's speech recognition: ask for text."""
    return TextReply(chat_copy.VOICE_UNRECOGNISED)


@router.on(kind("image", "video", "shortvideo", "location", "link"))
async def not_text(msg: Inbound) -> TextReply:
    """Media we cannot read yet: acknowledge, and point to the keywords."""
    return TextReply(f"{copy.NON_TEXT_FALLBACK}\n\n{help_text(msg)}")
