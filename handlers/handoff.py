"""Reaching a person: 人工 / 客服 (or the menu key), two messages the bot did not understand, or
a low rating queue the conversation for customer service; while a person has it, the bot stays
silent and every message goes to the console; 结束 / 返回 hands the member back to the bot.

With ``[console] handoff = "wechat"`` the bot instead answers with WeChat's
``transfer_customer_service`` reply, for brands that use WeChat's own customer-service system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from handlers.inbound import Inbound
from handlers.intents import normalize
from handlers.router import Declined, Filter, Router, intent
from messages import handoff_copy as copy
from messages.replies import Reply, TextReply, TransferToCustomerService
from models.base import utcnow
from models.conversations import (
    Conversation,
    add_message,
    end,
    open_conversation,
    queue_position,
)

router = Router("handoff")
# Message types whose content reaches the console (media as WeChat's media ids).
FORWARDED = frozenset({"text", "image", "voice", "video", "shortvideo"})


@dataclass(frozen=True)
class _WithPerson(Filter):
    def __call__(self, msg: Inbound) -> bool:
        return msg.handoff is not None and msg.kind in FORWARDED


@router.on(_WithPerson())
async def to_the_person(msg: Inbound) -> TextReply | None:
    """Forward the message to the console, silently (but for asking for a person again while
    still queued); 结束 / 返回 ends the conversation."""
    conversation_id = msg.handoff
    if conversation_id is None or msg.member_id is None:
        raise Declined
    now = utcnow()
    handoffs = msg.svc.handoffs
    if msg.kind == "text" and normalize(msg.text) in copy.END_WORDS:
        ended = await end(msg.db, conversation_id, "member_left", now)
        await msg.db.commit()
        await handoffs.finish(msg.openid)
        if ended is not None:
            await handoffs.publish("ended", conversation_id, outcome="member_left")
        return TextReply(copy.ENDED)
    conversation = await msg.db.get(Conversation, conversation_id)
    if conversation is None or conversation.status not in ("queued", "assigned"):
        await handoffs.finish(msg.openid)  # ended meanwhile: the bot answers again
        raise Declined
    message = await add_message(
        msg.db,
        conversation,
        "in",
        now,
        kind=msg.kind,
        content=msg.text,
        media_id=msg.media_id or None,
    )
    await msg.db.commit()
    await handoffs.publish(
        "message",
        conversation_id,
        id=message.id,
        direction="in",
        kind=msg.kind,
        content=msg.text,
        media_id=msg.media_id,
        at=now.isoformat(),
    )
    if msg.intent == "human" and conversation.status == "queued":
        # Still waiting: say so, with the place in the queue now, rather than nothing.
        ahead = await queue_position(msg.db, conversation, msg.svc.priority) - 1
        return TextReply(copy.ALREADY_AHEAD.format(ahead=ahead) if ahead else copy.ALREADY)
    return None


@router.on(intent("human"))
async def ask_for_a_person(msg: Inbound) -> Reply:
    """人工 / 客服 and the menu key."""
    return await hand_over(msg, "asked")


async def hand_over(
    msg: Inbound, reason: str, follow_up_id: int | None = None, lead: str = ""
) -> Reply:
    """Queue the member's conversation for a person and say what to expect (``lead`` first).
    In ``wechat`` mode, WeChat's own customer service takes it instead."""
    if msg.member_id is None:
        raise RuntimeError("hand-over without a member")
    if msg.svc.handoff_mode == "wechat":
        return TransferToCustomerService()
    now = utcnow()
    conversation, new = await open_conversation(msg.db, msg.member_id, reason, now, follow_up_id)
    position = await queue_position(msg.db, conversation, msg.svc.priority)
    await msg.db.commit()
    handoffs = msg.svc.handoffs
    await handoffs.begin(msg.openid, conversation.id)
    if new:
        await handoffs.publish("queued", conversation.id, reason=reason, at=now.isoformat())
    lines = [lead] if lead else []
    if not new:
        lines.append(copy.ALREADY)
    elif not _in_service_hours(msg, now):
        start, end_at = msg.svc.service_hours
        end = "24:00" if end_at == time.max else f"{end_at:%H:%M}"
        ahead = copy.OUT_OF_HOURS_AHEAD.format(ahead=position - 1) if position > 1 else ""
        lines.append(
            copy.OUT_OF_HOURS.format(
                start=f"{start:%H:%M}", end=end, when=_opens(msg, now), ahead=ahead
            )
        )
    elif position <= 1 or conversation.status == "assigned":
        lines.append(copy.QUEUED_FIRST)
    else:
        lines.append(copy.QUEUED.format(ahead=position - 1))
    return TextReply("\n".join(lines))


def _opens(msg: Inbound, now: datetime) -> str:
    """When the service day starts next, as the member reads it (今天09:00 / 明天09:00)."""
    start, _ = msg.svc.service_hours
    local = now.astimezone(msg.svc.rules.zone)
    at = f"{start:%H:%M}"
    if local.time() < start:
        return copy.OPENS_TODAY.format(at=at)
    return copy.OPENS_TOMORROW.format(at=at)


def _in_service_hours(msg: Inbound, now: datetime) -> bool:
    start, end_at = msg.svc.service_hours
    local = now.astimezone(msg.svc.rules.zone).time()
    return start <= local < end_at if start <= end_at else local >= start or local < end_at
