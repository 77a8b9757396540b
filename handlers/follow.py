"""Following and unfollowing the official account."""

from __future__ import annotations

from handlers.help import help_text
from handlers.inbound import Inbound
from handlers.referral import attribute_newcomer
from handlers.router import Router, event
from messages import copy
from messages.replies import TextReply
from models.members import find_member, record_subscribe, record_unsubscribe

router = Router("follow")


@router.on(event("subscribe", "subscribe_scan"))
async def welcome(msg: Inbound) -> TextReply:
    """Create (or reactivate) the member and greet them with what the bot can do."""
    known = await find_member(msg.db, msg.openid)
    returning = known is not None and known.unsubscribed_at is not None
    msg.member = await record_subscribe(msg.db, msg.openid, msg.sent_at)
    msg.member_id = msg.member.id
    greeting = copy.WELCOME_BACK if returning else copy.WELCOME
    if msg.event == "subscribe_scan" and known is None:  # anyone seen before is no newcomer
        referral = await attribute_newcomer(msg, msg.member, source="subscribe")
        if referral is not None:
            greeting = copy.WELCOME_REFERRED
    return TextReply(f"{greeting}\n\n{help_text(msg)}")


@router.on(event("unsubscribe"))
async def farewell(msg: Inbound) -> None:
    """Mark the member unsubscribed; nothing is deleted, and WeChat shows no reply."""
    await record_unsubscribe(msg.db, msg.openid, msg.sent_at)
