"""The last router: a friendly answer to what nothing else understood."""

from __future__ import annotations

from handlers.handoff import hand_over
from handlers.help import help_text
from handlers.inbound import Inbound
from handlers.router import Router, kind
from messages import copy, handoff_copy
from messages.replies import Reply, TextReply

router = Router("fallback")
# Texts in a row the bot did not understand (read by the webhook's gate); the dispatcher clears
# it when anything else answers. Two in a row hand the member to a person.
STREAK_KEY = "fallback:streak:{openid}"
STREAK_TTL = 600
HAND_OVER_AFTER = 2


@router.on(kind("text"))
async def not_understood(msg: Inbound) -> Reply:
    """Say we did not understand and show what we can do; the second time in a row, hand
    the member to a person."""
    key = STREAK_KEY.format(openid=msg.openid)
    redis = msg.svc.redis
    msg.keeps_streak = True
    if msg.not_understood + 1 >= HAND_OVER_AFTER:
        await redis.delete(key)
        return await hand_over(msg, "not_understood", lead=handoff_copy.NOT_UNDERSTOOD)
    await redis.set(key, msg.not_understood + 1, ex=STREAK_TTL)
    return TextReply(f"{copy.FALLBACK}\n\n{help_text(msg)}")


@router.on(kind("image", "voice", "video", "shortvideo", "location", "link"))
async def not_text(msg: Inbound) -> TextReply:
    """Media we cannot read yet: acknowledge, and point to the keywords."""
    return TextReply(f"{copy.NON_TEXT_FALLBACK}\n\n{help_text(msg)}")
