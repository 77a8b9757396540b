"""Runs one inbound message through the middleware steps and the router, in one unit of work."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.inbound import Inbound, Services
from handlers.router import Router
from messages.replies import Reply
from models.members import ensure_member

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
    """Resolves the intent, loads the member, picks the handler, commits what it did."""

    def __init__(
        self, router: Router, services: Services, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.router = router
        self.services = services
        self.sessions = sessions

    def resolve_intent(self, msg: Inbound) -> str | None:
        """What the member's words or menu key ask for, if anything we know."""
        if msg.kind == "event":
            return self.services.intents.for_menu_key(msg.key) if msg.event == "click" else None
        return self.services.intents.for_text(msg.text)

    async def dispatch(self, msg: Inbound) -> Reply | None:
        """The reply to ``msg`` (None: nothing to say), after its side effects are committed."""
        msg.services = self.services
        msg.intent = self.resolve_intent(msg)
        async with self.sessions() as session:
            msg.session = session
            if msg.kind != "event" or msg.event not in _NO_MEMBER_EVENTS:
                msg.member = await ensure_member(session, msg.openid, msg.sent_at)
            handler = self.router.resolve(msg)
            reply = await handler(msg) if handler is not None else None
            await session.commit()
        return reply
