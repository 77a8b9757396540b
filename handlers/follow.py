"""Following and unfollowing the official account."""

from __future__ import annotations

from handlers.help import help_text
from handlers.inbound import Inbound
from handlers.referral import attribute_newcomer
from handlers.router import Router, event
from messages import benefit_copy, copy
from messages.replies import TextReply
from models.benefits.engine import Granted
from models.benefits.welcome import grant_welcome
from models.members import find_member, record_subscribe, record_unsubscribe
from models.rules import ProgrammeRules

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
    granted = await grant_welcome(msg.db, msg.svc.rules, msg.member.id, msg.sent_at)
    greeting += welcome_line(msg.svc.rules, granted)
    return TextReply(f"{greeting}\n\n{help_text(msg)}")


def welcome_line(rules: ProgrammeRules, granted: Granted | None) -> str:
    """The welcome gift in words, after the greeting ("" when none was granted)."""
    if granted is None:
        return ""
    kind = rules.coupon_kind(granted.coupon_kind) if granted.coupon_kind else None
    return "\n" + benefit_copy.WELCOME_GIFT.format(
        gift=benefit_copy.gift_text(kind.name if kind else None, granted.points),
        until=benefit_copy.until_text(granted.valid_until, rules.zone),
    )


@router.on(event("unsubscribe"))
async def farewell(msg: Inbound) -> None:
    """Mark the member unsubscribed; nothing is deleted, and WeChat shows no reply."""
    await record_unsubscribe(msg.db, msg.openid, msg.sent_at)
