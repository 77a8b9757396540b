"""退订 / TD stops marketing pushes for the member (service notices still go: points, orders,
tier, birthday gift); 恢复推送 undoes it. The outbox skips a marketing push to a member who
opted out with the reason ``opted_out``."""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import chat_copy
from messages.replies import TextReply
from models.base import utcnow
from models.members import set_marketing_opt_out

router = Router("consent")


@router.on(intent("opt_out"))
async def opt_out(msg: Inbound) -> TextReply:
    """退订 / TD / 不要再推送了."""
    if msg.member_id is None:
        raise RuntimeError("opt-out without a member")
    changed = await set_marketing_opt_out(msg.db, msg.member_id, True, utcnow())
    return TextReply(chat_copy.OPTED_OUT if changed else chat_copy.ALREADY_OPTED_OUT)


@router.on(intent("opt_in"))
async def opt_in(msg: Inbound) -> TextReply:
    """恢复推送."""
    if msg.member_id is None:
        raise RuntimeError("opt-in without a member")
    changed = await set_marketing_opt_out(msg.db, msg.member_id, False, utcnow())
    return TextReply(chat_copy.OPTED_IN if changed else chat_copy.ALREADY_OPTED_IN)
