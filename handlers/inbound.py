"""What a handler receives: one inbound message, already parsed, with what it needs beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from handlers.understanding.pipeline import Understander, Understanding
from models.conversations import QueuePriority
from models.ledger import PointsSummary
from models.members import Member
from models.new_members import NewMembers
from models.ratings import OpenQuestion
from models.redemption_groups import Redemptions
from models.referrals import Share
from models.rules import ProgrammeRules


class MemberIds(Protocol):
    """Where the openid → member id mapping is cached between messages."""

    async def remember_member(self, openid: str, member_id: int) -> None: ...


class Receipts(Protocol):
    """Where WeChat's reports on template messages are queued for the batched write."""

    async def note(self, msgid: int, status: str) -> None: ...


class PointsSummaries(Protocol):
    """Where members' points summaries come from (a cache in front of the ledger)."""

    async def summary(
        self,
        member_id: int,
        now: datetime,
        reading: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        *,
        in_transaction: bool = False,
        seen: object = None,
    ) -> PointsSummary | None: ...


class Pushes(Protocol):
    """Where committed delivery rows go to be sent (the outbox)."""

    async def enqueue(self, delivery_ids: Iterable[int], at: datetime | None = None) -> None: ...


class Shares(Protocol):
    """Where a member's referral share (code, page, QR image) comes from."""

    async def share(self, member_id: int, now: datetime) -> Share: ...


class QuestionStore(Protocol):
    """Where members' open questions (ratings) live."""

    async def open(self, openid: str, question: OpenQuestion) -> None: ...

    async def take(
        self, openid: str, seen: OpenQuestion, then: OpenQuestion | None = None
    ) -> bool: ...

    async def answered(self, openid: str, seen: OpenQuestion) -> bool: ...

    async def reprompted(self, openid: str, seen: OpenQuestion) -> bool: ...


class HandoffDesk(Protocol):
    """Where members handed to a person are marked, and the console told."""

    async def begin(self, openid: str, conversation_id: int) -> None: ...

    async def finish(self, openid: str) -> None: ...

    async def publish(self, event: str, conversation_id: int, **fields: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    """What handlers share, wired once by the app factory."""

    intents: Understander
    sessions: async_sessionmaker[AsyncSession]
    # Read-only answers use an autocommit connection: no BEGIN/COMMIT round trips.
    reader: AsyncEngine
    rules: ProgrammeRules
    redis: Redis
    member_ids: MemberIds
    points: PointsSummaries
    receipts: Receipts
    pushes: Pushes
    shares: Shares
    questions: QuestionStore
    handoffs: HandoffDesk
    # The chat's redemptions (「确认」), grouped per item on PostgreSQL.
    redemptions: Redemptions
    # The members of messages the gate has no member id for, found or created in groups.
    new_members: NewMembers
    # "console": people answer in /console/; "wechat": WeChat's own customer-service system.
    handoff_mode: str = "console"
    # When people answer (local times); outside them a member is told when they will.
    service_hours: tuple[time, time] = (time(9), time(21))
    # Which tiers are served first ([console] priority_tiers): the 专属客服 lane.
    priority: QueuePriority = field(default_factory=QueuePriority)
    # Where members' phones reach this service (links in replies).
    public_url: str = "http://127.0.0.1:8080"
    capabilities: tuple[str, ...] = ()
    # The brand's FAQ answers by key (``[chat.faq]``).
    faq_answers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Inbound:
    """A member's message or event, free of XML and HTTP.

    ``kind`` is WeChat's MsgType (text, image, voice, event, …); ``event`` the lower-cased
    event name for events (subscribe, subscribe_scan, unsubscribe, scan, click, view, …);
    ``text`` the message text (for voice, WeChat's recognition, if any); ``key`` the menu
    key or QR scene; ``intent`` what the member's words or menu key ask for.
    ``member_id`` is known before the handler runs; the row itself is loaded only by handlers
    that need it (``await msg.load_member()``), so the common path costs no SQL.
    """

    openid: str
    kind: str
    sent_at: datetime
    event: str | None = None
    text: str = ""
    key: str = ""
    media_id: str = ""
    msg_id: int = 0  # MsgId, or MsgID of a TEMPLATESENDJOBFINISH
    status: str = ""  # Status of a TEMPLATESENDJOBFINISH
    intent: str | None = None
    # What the understanding step made of the text: slots, confidence, further intents, choices.
    understood: Understanding | None = None
    state: str | None = None
    # The question the member has open (a rating), read with the message's Redis work.
    question: OpenQuestion | None = None
    # The conversation a person has with the member (the bot stays silent), if any.
    handoff: int | None = None
    # Messages in a row before this one that the bot did not understand; ``keeps_streak``:
    # this one was not understood either (else the dispatcher resets the count).
    not_understood: int = 0
    keeps_streak: bool = False
    member_id: int | None = None
    # The member was created by this very message (see ``nothing_on_record``).
    new_member: bool = False
    # What the points cache held for the member when the message came in, looked up with the
    # message's Redis work; opaque here, handed back to ``svc.points.summary``.
    points_seen: object = None
    # The bot's own open question (handlers/clarify.py) as Redis held it when the message came
    # in, read with the message's Redis work: b"" for none, None when not read that way.
    asked_seen: bytes | None = None
    member: Member | None = None
    session: AsyncSession | None = field(default=None, repr=False)
    services: Services | None = field(default=None, repr=False)

    @property
    def nothing_on_record(self) -> bool:
        """The member was created by this message and no handler has opened its unit of work
        since (one that answered first in the same message may have written for them): their
        points, tier and coupons are a new member's, and the answers that would read them
        need not."""
        return self.new_member and self.session is None

    @property
    def db(self) -> AsyncSession:
        """The unit of work this message runs in, opened on first use and committed by the
        dispatcher after the handler returns; a handler that touches no table costs no SQL."""
        if self.session is None:
            self.session = self.svc.sessions()
        return self.session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for read-only queries: the message's own, if its unit of work has
        one open (never a second connection per message: the pool would run dry under load),
        else an autocommit connection without BEGIN/COMMIT round trips."""
        if self.session is not None:
            yield await self.session.connection()
            return
        async with self.svc.reader.connect() as connection:
            yield connection

    async def load_member(self) -> Member:
        """The member's row, loaded once per message."""
        if self.member is None:
            if self.member_id is None:
                raise RuntimeError("message has no member")
            self.member = await self.db.get_one(Member, self.member_id)
        return self.member

    def slot(self, name: str) -> str | None:
        """A slot the understanding step read from the text (a date, a tier, a FAQ key)."""
        return self.understood.slots.get(name) if self.understood is not None else None

    @property
    def svc(self) -> Services:
        """The shared services (intent tables, …)."""
        if self.services is None:
            raise RuntimeError("handler ran outside the dispatcher")
        return self.services
