"""What a handler receives: one inbound message, already parsed, with what it needs beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.intents import IntentMatcher
from models.members import Member


@dataclass(frozen=True, slots=True)
class Services:
    """What handlers share, wired once by the app factory."""

    intents: IntentMatcher
    capabilities: tuple[str, ...] = ()


@dataclass(slots=True)
class Inbound:
    """A member's message or event, free of XML and HTTP.

    ``kind`` is WeChat's MsgType (text, image, voice, event, …); ``event`` the lower-cased
    event name for events (subscribe, subscribe_scan, unsubscribe, scan, click, view, …);
    ``text`` the message text (for voice, WeChat's recognition, if any); ``key`` the menu
    key or QR scene; ``intent`` what the member's words or menu key ask for.
    """

    openid: str
    kind: str
    sent_at: datetime
    event: str | None = None
    text: str = ""
    key: str = ""
    media_id: str = ""
    intent: str | None = None
    state: str | None = None
    member: Member | None = None
    session: AsyncSession | None = field(default=None, repr=False)
    services: Services | None = field(default=None, repr=False)

    @property
    def db(self) -> AsyncSession:
        """The unit of work this message runs in (committed after the handler returns)."""
        if self.session is None:
            raise RuntimeError("handler ran outside the dispatcher")
        return self.session

    @property
    def svc(self) -> Services:
        """The shared services (intent tables, …)."""
        if self.services is None:
            raise RuntimeError("handler ran outside the dispatcher")
        return self.services
