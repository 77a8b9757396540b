"""The brand's FAQ answers (``[chat.faq]``): opening hours, delivery, returns…"""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Declined, Router, intent
from messages.replies import TextReply

router = Router("faq")


@router.on(intent("faq"))
async def answer_faq(msg: Inbound) -> TextReply:
    """The configured answer of the FAQ entry the member asked."""
    answer = msg.svc.faq_answers.get(msg.slot("faq") or "")
    if answer is None:  # taught to an entry the configuration no longer has
        raise Declined
    return TextReply(answer)
