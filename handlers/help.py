"""帮助: what the bot can do, listing only capabilities that are really there."""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import copy
from messages.replies import TextReply

router = Router("help")


def help_text(msg: Inbound) -> str:
    """The help menu, with each capability's first keyword from the configuration."""
    words = msg.svc.intents
    entries = [
        (words.first_keyword(name), name)
        for name in copy.CAPABILITIES
        if name in msg.svc.capabilities and name != "help"
    ]
    return copy.help_menu(entries, words.first_keyword("help"))


@router.on(intent("help"))
async def show_help(msg: Inbound) -> TextReply:
    """Answer 帮助 / 菜单 / ? and the help menu key."""
    return TextReply(help_text(msg))
