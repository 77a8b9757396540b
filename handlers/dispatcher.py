"""Runs one inbound message through the middleware steps and the router, in one unit of work."""

from __future__ import annotations

from handlers.fallback import STREAK_KEY
from handlers.inbound import Inbound, Services
from handlers.router import Declined, Router
from messages.replies import Reply
from models.members import ensure_member_id, member_id_for

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
        """What the member's words or menu key ask for, if anything we know."""
        if msg.kind == "event":
            return self.services.intents.for_menu_key(msg.key) if msg.event == "click" else None
        return self.services.intents.for_text(msg.text)

    async def _new_member(self, msg: Inbound) -> int:
        """Create the member of a first message in a short transaction of its own, committed
        before the handler runs: in the message's unit of work, SQLite's write lock was held
        through the whole handler, and concurrent first messages queued behind it for up to a
        second. The row stands whatever the handler then does, as it would on a retry."""
        async with self.services.sessions() as session:
            member_id = await ensure_member_id(session, msg.openid, msg.sent_at)
            await session.commit()
        return member_id

    async def dispatch(self, msg: Inbound) -> Reply | None:
        """The reply to ``msg`` (None: nothing to say), after its side effects are committed.

        ``msg.member_id`` comes filled in when the member is known from an earlier message;
        otherwise the member is looked up, or created for a follower we have not seen.
        """
        msg.services = self.services
        msg.intent = self.resolve_intent(msg)
        known = msg.member_id
        try:
            if known is None and (msg.kind != "event" or msg.event not in _NO_MEMBER_EVENTS):
                async with msg.reading() as connection:
                    msg.member_id = await member_id_for(connection, msg.openid)
                if msg.member_id is None:
                    msg.member_id = await self._new_member(msg)
            handler = self.router.resolve(msg)
            try:
                reply = await handler(msg) if handler is not None else None
            except Declined:
                # Whatever open state made the handler take the message is not for it.
                msg.question, msg.handoff = None, None
                handler = self.router.resolve(msg)
                reply = await handler(msg) if handler is not None else None
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
