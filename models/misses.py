"""What the bot did not understand, kept so staff can teach it.

Each phrasing (the message normalised, long digit runs such as phone numbers masked) is one
row with a count; the member's own words are kept beside it, one row per message, only for
``[chat] miss_retention_days`` and never after the member is erased. Staff attach a phrasing
to an intent or a FAQ entry (``teach``); every process picks the taught phrasings up
(``taught_phrasings``) without a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, delete, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
PHRASING_LENGTH = 200
TEXT_LENGTH = 500
# Seven digits or more: a phone, card or order number, never shown to staff as typed.
_LONG_NUMBER = re.compile(r"\d{7,}")


class ChatMiss(Base):
    __tablename__ = "chat_misses"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    phrasing: Mapped[str] = mapped_column(String(PHRASING_LENGTH), unique=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # What staff attached it to: an intent, and the FAQ entry when the intent is "faq".
    taught_intent: Mapped[str | None] = mapped_column(String(32))
    taught_faq: Mapped[str | None] = mapped_column(String(64))
    taught_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taught_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))


class ChatMissText(Base):
    """A member's own words in one message the bot did not understand."""

    __tablename__ = "chat_miss_texts"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    miss_id: Mapped[int] = mapped_column(ForeignKey("chat_misses.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    text: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def masked_phrasing(normalised: str) -> str:
    """The phrasing kept for a normalised message: long numbers masked, length capped."""
    return _LONG_NUMBER.sub("#", normalised)[:PHRASING_LENGTH]


async def record_miss(
    session: AsyncSession, normalised: str, member_id: int, text: str, now: datetime
) -> None:
    """Count the phrasing (one upsert, safe when many members miss at once) and keep the
    member's words."""
    phrasing = masked_phrasing(normalised)
    if not phrasing:
        return
    insert = dialect_insert(session)
    miss_id = await session.scalar(
        insert(ChatMiss)
        .values(phrasing=phrasing, count=1, first_seen_at=now, last_seen_at=now)
        .on_conflict_do_update(
            index_elements=[ChatMiss.phrasing],
            set_={"count": ChatMiss.__table__.c.count + 1, "last_seen_at": now},
        )
        .returning(ChatMiss.id)
    )
    session.add(
        ChatMissText(miss_id=miss_id, member_id=member_id, text=text[:TEXT_LENGTH], created_at=now)
    )


@dataclass(frozen=True, slots=True)
class MissRow:
    """A phrasing as the misses page lists it."""

    id: int
    phrasing: str
    count: int
    members: int
    last_seen_at: datetime
    taught_intent: str | None
    taught_faq: str | None


async def list_misses(session: AsyncSession, taught: bool, limit: int = 200) -> list[MissRow]:
    """The most frequent phrasings not taught yet (or, with ``taught``, the taught ones),
    with how many members wrote them within the retention period."""
    texts = ChatMissText.__table__
    members = (
        select(func.count(func.distinct(texts.c.member_id)))
        .where(texts.c.miss_id == ChatMiss.id)
        .scalar_subquery()
    )
    query = select(ChatMiss, members).where(
        ChatMiss.taught_intent.is_not(None) if taught else ChatMiss.taught_intent.is_(None)
    )
    rows = await session.execute(
        query.order_by(ChatMiss.count.desc(), ChatMiss.last_seen_at.desc()).limit(limit)
    )
    return [
        MissRow(
            miss.id,
            miss.phrasing,
            miss.count,
            int(count or 0),
            miss.last_seen_at,
            miss.taught_intent,
            miss.taught_faq,
        )
        for miss, count in rows
    ]


async def teach(
    session: AsyncSession,
    miss_id: int,
    intent: str,
    faq_key: str | None,
    staff_id: int,
    now: datetime,
) -> ChatMiss | None:
    """Attach the phrasing to an intent (and FAQ entry); None when there is no such miss."""
    miss = await session.get(ChatMiss, miss_id)
    if miss is None:
        return None
    miss.taught_intent, miss.taught_faq = intent, faq_key
    miss.taught_at, miss.taught_by = now, staff_id
    await session.flush()
    return miss


async def taught_phrasings(connection: AsyncConnection) -> dict[str, tuple[str, str]]:
    """Every taught phrasing → (intent, FAQ key or "")."""
    table = ChatMiss.__table__
    rows = await connection.execute(
        select(table.c.phrasing, table.c.taught_intent, table.c.taught_faq).where(
            table.c.taught_intent.is_not(None)
        )
    )
    return {phrasing: (intent, faq or "") for phrasing, intent, faq in rows}


async def forget_old_texts(session: AsyncSession, before: datetime) -> int:
    """Delete members' words kept since before ``before`` (the phrasings and counts stay)."""
    result = await session.execute(delete(ChatMissText).where(ChatMissText.created_at < before))
    return result.rowcount or 0


async def forget_member_texts(session: AsyncSession, member_id: int) -> int:
    """Delete every word the member wrote that the bot kept (erasure)."""
    result = await session.execute(delete(ChatMissText).where(ChatMissText.member_id == member_id))
    return result.rowcount or 0
