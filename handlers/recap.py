"""年度回顾: the member's own link to last year's recap page (the push only names the keyword)."""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import recap_copy
from messages.replies import TextReply
from models.recap import latest_recap, recap_url

router = Router("recap")


@router.on(intent("recap"))
async def show_recap(msg: Inbound) -> TextReply:
    """Answer 年度回顾 with the link to the member's latest recap."""
    if msg.member_id is None:
        raise RuntimeError("recap asked without a member")
    async with msg.reading() as connection:
        found = await latest_recap(connection, msg.member_id)
    if found is None:
        return TextReply(recap_copy.CHAT_NONE)
    year, token = found
    return TextReply(
        recap_copy.CHAT_LINK.format(year=year, url=recap_url(msg.svc.public_url, token))
    )
