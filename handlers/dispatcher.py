"""Runs one inbound message through the middleware steps and the router, in one unit of work."""

from __future__ import annotations

from handlers import clarify
from handlers.fallback import STREAK_KEY
from handlers.inbound import Inbound, Services
from handlers.router import Declined, Router
from messages import chat_copy
from messages.replies import Reply, TextReply

# Events that are not a member talking to us, or whose handler manages the member itself.
_NO_MEMBER_EVENTS = frozenset(
    {
        "subscribe",
        "subscribe_scan",
        "unsubscribe",
        "templatesendjobfinish",
        "masssendjobfinish",
    }
)


class Dispatcher:
    """Resolves the intent, identifies the member, picks the handler, commits what it did."""

    def __init__(self, router: Router, services: Services) -> None:
        self.router = router
        self.services = services

    def resolve_intent(self, msg: Inbound) -> str | None:
        """What the member's words or menu key ask for, if anything we know. While a question
        is open or a person has the conversation, free text is an answer to them: only the
        exact keywords are looked for."""
        words = self.services.intents
        if msg.kind == "event":
            return words.for_menu_key(msg.key) if msg.event == "click" else None
        if not msg.text:
            return None
        if msg.question is not None or msg.handoff is not None:
            msg.understood = words.exactly(msg.text)
        else:
            msg.understood = words.understand(msg.text)
        return msg.understood.intent if msg.understood is not None else None

    async def understand(self, msg: Inbound) -> None:
        """Fill in ``msg.intent`` (and ``msg.understood``): a recognised voice message counts
        as typed text; a short answer to the bot's own question (a digit, a date, 「是」)
        means what the question offered."""
        if msg.kind == "voice" and msg.text and msg.handoff is None:
            msg.kind = "text"
        msg.intent = self.resolve_intent(msg)
        if msg.kind == "text" and msg.question is None and msg.handoff is None:
            await clarify.answer(msg)

    async def _answer(self, msg: Inbound) -> Reply | None:
        """The handler's reply; a message that asked for several things gets every answer."""
        handler = self.router.resolve(msg)
        reply = await handler(msg) if handler is not None else None
        further = msg.understood.also if msg.understood is not None and msg.intent else ()
        if not further or not isinstance(reply, TextReply):
            return reply
        parts = [reply.text]
        for name in further:
            msg.intent = name
            more = self.router.resolve(msg)
            answer = await more(msg) if more is not None else None
            if isinstance(answer, TextReply):
                parts.append(answer.text)
        return TextReply(chat_copy.SEPARATOR.join(parts))

    async def dispatch(self, msg: Inbound) -> Reply | None:
        """The reply to ``msg`` (None: nothing to say), after its side effects are committed.

        ``msg.member_id`` comes filled in when the member is known from an earlier message;
        otherwise the member is looked up, or created for a follower we have not seen.
        """
        msg.services = self.services
        await self.understand(msg)
        known = msg.member_id
        try:
            if known is None and (msg.kind != "event" or msg.event not in _NO_MEMBER_EVENTS):
                # Found, or created for a first message, on its own and committed before the
                # handler runs (grouped with other such messages: models/new_members.py). In
                # the message's unit of work, SQLite's write lock was held through the whole
                # handler. The row stands whatever the handler then does, as on a retry.
                msg.member_id, msg.new_member = await self.services.new_members.member_id(
                    msg.openid, msg.sent_at
                )
            try:
                reply = await self._answer(msg)
            except Declined:
                # Whatever open state made the handler take the message is not for it: the
                # text is understood afresh, as if nothing were open.
                msg.question, msg.handoff = None, None
                await self.understand(msg)
                reply = await self._answer(msg)
            if msg.session is not None:
                await msg.session.commit()
        finally:
            if msg.session is not None:
                await msg.session.close()
        if known is None and msg.member_id is not None:
            await self.services.member_ids.remember_member(msg.openid, msg.member_id)
        if msg.not_understood and not msg.keeps_streak:
            await self.services.redis.delete(STREAK_KEY.format(openid=msg.openid))
        return reply
