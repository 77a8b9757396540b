"""Cases (工单): what an agent promised a member, kept past the conversation.

An agent turns a conversation into a case (one per conversation) with a category, notes and a
due time: by default ``resolve_hours`` after the member's first message of the conversation
(the seeds' 24-hour solution). A case outlives the conversation's idle return: the agent writes
to the member later from the case, closes it with an outcome, and may reopen it. A case is
overdue while open past its due time. Every change is a conditional UPDATE on the status, so
two agents closing (or reopening) at once do it once; each leaves an entry in the case's
history, and the caller audits it in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.conversations import Conversation, ConversationMessage
from models.members import Member
from models.staff import Staff

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
CATEGORIES = ("returns", "quality", "logistics", "points", "other")
STATES = ("open", "overdue", "closed", "all")


class ServiceCase(Base):
    __tablename__ = "service_cases"
    __table_args__ = (Index("ix_service_cases_status_due_at", "status", "due_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), unique=True)
    category: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(8))  # open, closed
    # Who works it (the agent who opened it, or who took it over).
    owner_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    opened_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    outcome: Mapped[str | None] = mapped_column(Text)
    reopened: Mapped[int] = mapped_column(Integer, default=0)


class CaseEntry(Base):
    """One line of a case's history: opened, message, template, updated, taken, closed,
    reopened (``content``: the text sent, the outcome, the reason)."""

    __tablename__ = "service_case_entries"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("service_cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def overdue(now: datetime) -> Any:
    """SQL: the case is open past its due time."""
    return (ServiceCase.status == "open") & (ServiceCase.due_at < now)


async def default_due(
    session: AsyncSession, conversation: Conversation, resolve_hours: int
) -> datetime:
    """``resolve_hours`` after the member's first message of the conversation (its queueing
    when it has none: a low rating or a follow-up queued it)."""
    first = await session.scalar(
        select(func.min(ConversationMessage.created_at)).where(
            ConversationMessage.conversation_id == conversation.id,
            ConversationMessage.direction == "in",
        )
    )
    return (first or conversation.queued_at) + timedelta(hours=resolve_hours)


async def open_case(
    session: AsyncSession,
    conversation: Conversation,
    staff_id: int,
    category: str,
    notes: str,
    due_at: datetime,
    now: datetime,
) -> ServiceCase | None:
    """A new case for the conversation, owned by ``staff_id``; None if it has one already
    (one INSERT … ON CONFLICT DO NOTHING, so two agents at once make one case)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown case category {category!r}")
    new_id = await session.scalar(
        dialect_insert(session)(ServiceCase)
        .values(
            member_id=conversation.member_id,
            conversation_id=conversation.id,
            category=category,
            notes=notes,
            status="open",
            owner_id=staff_id,
            opened_by=staff_id,
            opened_at=now,
            due_at=due_at,
            reopened=0,
        )
        .on_conflict_do_nothing(index_elements=["conversation_id"])
        .returning(ServiceCase.id)
    )
    if new_id is None:
        return None
    await add_entry(session, new_id, "opened", now, staff_id)
    return await session.get_one(ServiceCase, new_id)


async def case_of_conversation(session: AsyncSession, conversation_id: int) -> ServiceCase | None:
    """The conversation's case, if it has one."""
    return await session.scalar(
        select(ServiceCase).where(ServiceCase.conversation_id == conversation_id)
    )


async def add_entry(
    session: AsyncSession,
    case_id: int,
    kind: str,
    now: datetime,
    staff_id: int | None,
    content: str = "",
) -> CaseEntry:
    """Append a line to the case's history."""
    entry = CaseEntry(
        case_id=case_id, kind=kind, content=content, staff_id=staff_id, created_at=now
    )
    session.add(entry)
    await session.flush()
    return entry


async def close_case(
    session: AsyncSession, case_id: int, staff_id: int, outcome: str, now: datetime
) -> bool:
    """Close an open case with its outcome; False if it was closed already."""
    result = await session.execute(
        update(ServiceCase)
        .where(ServiceCase.id == case_id, ServiceCase.status == "open")
        .values(status="closed", closed_at=now, closed_by=staff_id, outcome=outcome)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        return False
    await add_entry(session, case_id, "closed", now, staff_id, outcome)
    return True


async def reopen_case(
    session: AsyncSession,
    case_id: int,
    staff_id: int,
    reason: str,
    now: datetime,
    due_at: datetime | None = None,
) -> bool:
    """Open a closed case again, with a new due time if given (otherwise it keeps its own:
    past it, the case is overdue at once); False if it was open already."""
    result = await session.execute(
        update(ServiceCase)
        .where(ServiceCase.id == case_id, ServiceCase.status == "closed")
        .values(
            status="open",
            closed_at=None,
            closed_by=None,
            outcome=None,
            reopened=ServiceCase.reopened + 1,
            **({"due_at": due_at} if due_at is not None else {}),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        return False
    await add_entry(session, case_id, "reopened", now, staff_id, reason)
    return True


async def update_case(
    session: AsyncSession,
    case: ServiceCase,
    staff_id: int,
    now: datetime,
    *,
    category: str,
    notes: str,
    due_at: datetime,
) -> list[str]:
    """Change an open case's category, notes or due time; the fields changed (recorded in
    its history)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown case category {category!r}")
    changed = [
        name
        for name, old, new in (
            ("category", case.category, category),
            ("notes", case.notes, notes),
            ("due_at", case.due_at, due_at),
        )
        if old != new
    ]
    if changed:
        case.category, case.notes, case.due_at = category, notes, due_at
        await add_entry(session, case.id, "updated", now, staff_id, ",".join(changed))
    return changed


async def take_case(session: AsyncSession, case_id: int, staff_id: int, now: datetime) -> bool:
    """Become the case's owner; False if it was ours already."""
    result = await session.execute(
        update(ServiceCase)
        .where(ServiceCase.id == case_id, ServiceCase.owner_id != staff_id)
        .values(owner_id=staff_id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        return False
    await add_entry(session, case_id, "taken", now, staff_id)
    return True


@dataclass(frozen=True, slots=True)
class CaseRow:
    """A case as the list shows it."""

    case: ServiceCase
    member_name: str | None
    member_openid: str | None
    owner: str
    overdue: bool


async def list_cases(
    session: AsyncSession,
    now: datetime,
    *,
    state: str = "open",
    owner_id: int | None = None,
    category: str | None = None,
    member_id: int | None = None,
    limit: int = 200,
) -> list[CaseRow]:
    """Cases by ``state`` (open, overdue, closed, all), owner, category and member: overdue
    first (the longest overdue first), then open ones by due time, then closed ones, latest
    first."""
    if state not in STATES:
        raise ValueError(f"unknown case state {state!r}")
    late = overdue(now)
    query = (
        select(ServiceCase, Member.name, Member.openid, Staff.username, late)
        .join(Member, Member.id == ServiceCase.member_id)
        .join(Staff, Staff.id == ServiceCase.owner_id)
    )
    if state == "open":
        query = query.where(ServiceCase.status == "open")
    elif state == "overdue":
        query = query.where(late)
    elif state == "closed":
        query = query.where(ServiceCase.status == "closed")
    if owner_id is not None:
        query = query.where(ServiceCase.owner_id == owner_id)
    if category is not None:
        query = query.where(ServiceCase.category == category)
    if member_id is not None:
        query = query.where(ServiceCase.member_id == member_id)
    rows = await session.execute(
        query.order_by(
            case((late, 0), (ServiceCase.status == "open", 1), else_=2),
            case((ServiceCase.status == "open", ServiceCase.due_at)),
            ServiceCase.closed_at.desc(),
            ServiceCase.id.desc(),
        ).limit(limit)
    )
    return [
        CaseRow(c, name, openid, owner, bool(is_late)) for c, name, openid, owner, is_late in rows
    ]
