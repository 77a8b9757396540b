"""Things that happened to a member that others act on later (pushes, webhooks to shops).

Rows are written in the same transaction as the change they describe, so nothing is announced
that did not happen and nothing that happened goes unannounced.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime


class MemberEvent(Base):
    __tablename__ = "member_events"
    __table_args__ = (
        Index(
            "ix_member_events_unprocessed",
            "id",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
        Index(
            "ix_member_events_unhooked",
            "id",
            postgresql_where=text("hooked_at IS NULL"),
            sqlite_where=text("hooked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Pushes planned (bot/push/notifications.py), and fanned out to shop systems (models/hooks.py).
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hooked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


async def record_event(
    session: AsyncSession, member_id: int, kind: str, payload: dict[str, Any], at: datetime
) -> None:
    """Record ``kind`` (e.g. ``tier_upgraded``) for the member, in the caller's transaction."""
    session.add(MemberEvent(member_id=member_id, kind=kind, payload=payload, created_at=at))


async def unprocessed_events(session: AsyncSession, limit: int) -> list[MemberEvent]:
    """The oldest events whose pushes are not planned yet (of every kind: those without a push
    are marked too, so the unprocessed index stays short); locked on PostgreSQL (skipping rows
    another process holds), so two processes never take the same event."""
    query = (
        select(MemberEvent)
        .where(MemberEvent.processed_at.is_(None))
        .order_by(MemberEvent.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


async def mark_processed(session: AsyncSession, event_ids: Iterable[int], at: datetime) -> None:
    """Record that these events have been acted on."""
    ids = list(event_ids)
    if ids:
        await session.execute(
            update(MemberEvent).where(MemberEvent.id.in_(ids)).values(processed_at=at)
        )
