"""The last router: a friendly answer to what nothing else understood."""

from __future__ import annotations

from handlers.help import help_text
from handlers.inbound import Inbound
from handlers.router import Router, kind
from messages import copy
from messages.replies import TextReply

router = Router("fallback")


@router.on(kind("text"))
async def not_understood(msg: Inbound) -> TextReply:
    """Say we did not understand, and show what we can do."""
    return TextReply(f"{copy.FALLBACK}\n\n{help_text(msg)}")


@router.on(kind("image", "voice", "video", "shortvideo", "location", "link"))
async def not_text(msg: Inbound) -> TextReply:
    """Media we cannot read yet: acknowledge, and point to the keywords."""
    return TextReply(f"{copy.NON_TEXT_FALLBACK}\n\n{help_text(msg)}")
