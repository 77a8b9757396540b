"""Greetings, thanks and refusals: a short, warm answer, not the menu."""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import chat_copy
from messages.replies import TextReply

router = Router("smalltalk")


@router.on(intent("greeting"))
async def greet(msg: Inbound) -> TextReply:
    """你好 / 在吗: hello, and that the member can just say what they want."""
    return TextReply(chat_copy.GREETING)


@router.on(intent("thanks"))
async def you_are_welcome(msg: Inbound) -> TextReply:
    """谢谢 / 好的 / 👍: a short acknowledgement."""
    return TextReply(chat_copy.THANKS)


@router.on(intent("decline"))
async def understood_no(msg: Inbound) -> TextReply:
    """不用了 / 不用转人工: nothing to do, and nobody is called."""
    return TextReply(chat_copy.DECLINE)
