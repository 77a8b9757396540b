"""Conversations handed from the bot to a person, their messages, and the times that matter.

A conversation is ``queued`` (waiting for an agent), ``assigned`` (an agent has it), then
``closed`` (by the agent: the rating question follows) or ``returned`` (to the bot: by the
member's 结束, by the agent, or after ``idle_minutes`` of silence). A member has at most one
open conversation (a partial unique index), so asking twice, or racing, queues once.

First response and resolution are measured from ``queued_at``: what the member waited.

The queue's order (``QueuePriority``): the member's tier rank (the tiers with the priority lane,
highest first; every other tier after them), then the time queued, then the id. The member's
position, the console's list and auto-assignment all use this one order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert, local_period
from models.members import Member
from models.staff import Staff

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
OPEN = ("queued", "assigned")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_open_member",
            "member_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'assigned')"),
            sqlite_where=text("status IN ('queued', 'assigned')"),
        ),
        Index("ix_conversations_status_queued_at", "status", "queued_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # Why it was queued: asked (人工), not_understood, low_rating.
    reason: Mapped[str] = mapped_column(String(16))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_agent_reply_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # How it ended: closed, handed_back (by the agent), member_left (结束), idle.
    outcome: Mapped[str | None] = mapped_column(String(16))
    follow_up_id: Mapped[int | None] = mapped_column(ForeignKey("follow_ups.id"))


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    # in (the member), out (an agent's reply), note (private), event (claimed, transferred…).
    direction: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # text, image, voice, template
    content: Mapped[str] = mapped_column(Text, default="")
    media_id: Mapped[str | None] = mapped_column(String(200))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class QueuePriority:
    """Who is served first: ``tiers`` (codes, highest first) jump the queue in that order;
    ``dedicated`` (usernames) are the agents who get the first of those tiers' conversations
    first when they are online with room (tier benefit 专属客服)."""

    tiers: tuple[str, ...] = ()
    dedicated: tuple[str, ...] = ()

    def has_lane(self, tier: str) -> bool:
        """Whether members of ``tier`` are served ahead of the others (the 专属客服 lane)."""
        return tier in self.tiers

    def rank(self) -> Any:
        """SQL: the member's place among the priority tiers (0 first), the rest after them."""
        if not self.tiers:
            return literal(0)
        return case(
            {code: n for n, code in enumerate(self.tiers)},
            value=Member.tier,
            else_=len(self.tiers),
        )


def queue_order(priority: QueuePriority) -> list[Any]:
    """ORDER BY of queued conversations (joined to their member): priority, then waiting."""
    return [priority.rank(), Conversation.queued_at, Conversation.id]


async def open_conversation(
    session: AsyncSession,
    member_id: int,
    reason: str,
    now: datetime,
    follow_up_id: int | None = None,
) -> tuple[Conversation, bool]:
    """The member's open conversation, queued now if there was none; (it, newly queued)."""
    stmt = (
        dialect_insert(session)(Conversation)
        .values(
            member_id=member_id,
            status="queued",
            reason=reason,
            queued_at=now,
            last_activity_at=now,
            follow_up_id=follow_up_id,
        )
        .on_conflict_do_nothing()
        .returning(Conversation.id)
    )
    new_id = await session.scalar(stmt)
    if new_id is not None:
        return await session.get_one(Conversation, new_id), True
    existing = await open_conversation_of(session, member_id)
    if existing is None:  # closed in between: try once more
        return await open_conversation(session, member_id, reason, now, follow_up_id)
    return existing, False


async def open_conversation_of(session: AsyncSession, member_id: int) -> Conversation | None:
    """The member's queued or assigned conversation, if any."""
    return await session.scalar(
        select(Conversation).where(
            Conversation.member_id == member_id, Conversation.status.in_(OPEN)
        )
    )


async def add_message(
    session: AsyncSession,
    conversation: Conversation,
    direction: str,
    now: datetime,
    *,
    kind: str = "text",
    content: str = "",
    media_id: str | None = None,
    staff_id: int | None = None,
) -> ConversationMessage:
    """Append a message to the conversation (and keep its activity times)."""
    message = ConversationMessage(
        conversation_id=conversation.id,
        direction=direction,
        kind=kind,
        content=content,
        media_id=media_id,
        staff_id=staff_id,
        created_at=now,
    )
    session.add(message)
    if direction in ("in", "out"):
        conversation.last_activity_at = now
    if direction == "out":
        conversation.last_agent_reply_at = now
        if conversation.first_response_at is None:
            conversation.first_response_at = now
    await session.flush()
    return message


async def queue_position(
    session: AsyncSession, conversation: Conversation, priority: QueuePriority | None = None
) -> int:
    """1 for the first queued conversation in the queue's order (module docstring), and so on:
    the conversations ahead of this one, plus one."""
    rank = (priority or QueuePriority()).rank()
    mine = await session.scalar(select(rank).where(Member.id == conversation.member_id))
    c = Conversation
    ahead = await session.scalar(
        select(func.count())
        .select_from(c)
        .join(Member, Member.id == c.member_id)
        .where(
            c.status == "queued",
            or_(
                rank < mine,
                and_(
                    rank == mine,
                    or_(
                        c.queued_at < conversation.queued_at,
                        and_(c.queued_at == conversation.queued_at, c.id < conversation.id),
                    ),
                ),
            ),
        )
    )
    return int(ahead or 0) + 1


async def claim(session: AsyncSession, conversation_id: int, staff_id: int, now: datetime) -> bool:
    """Take a queued conversation (or keep one already ours); False if another agent has it
    or it has ended. One conditional UPDATE, so two agents never both get it."""
    result = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            or_(
                Conversation.status == "queued",
                and_(Conversation.status == "assigned", Conversation.assigned_to == staff_id),
            ),
        )
        .values(status="assigned", assigned_to=staff_id, assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def transfer(
    session: AsyncSession, conversation_id: int, from_staff: int, to_staff: int, now: datetime
) -> bool:
    """Hand an assigned conversation to another agent."""
    result = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.status == "assigned",
            Conversation.assigned_to == from_staff,
        )
        .values(assigned_to=to_staff, assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def end(
    session: AsyncSession,
    conversation_id: int,
    outcome: str,
    now: datetime,
    staff_id: int | None = None,
) -> int | None:
    """End an open conversation (closed, handed_back, member_left, idle); its member's id,
    or None if it had ended already."""
    status = "closed" if outcome == "closed" else "returned"
    return await session.scalar(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status.in_(OPEN))
        .values(status=status, outcome=outcome, closed_at=now, closed_by=staff_id)
        .returning(Conversation.member_id)
        .execution_options(synchronize_session=False)
    )


async def open_load(session: AsyncSession) -> dict[int, int]:
    """Open conversations per agent."""
    rows = await session.execute(
        select(Conversation.assigned_to, func.count())
        .where(Conversation.status == "assigned")
        .group_by(Conversation.assigned_to)
    )
    return {staff_id: count for staff_id, count in rows if staff_id is not None}


async def assign_waiting(
    session: AsyncSession,
    now: datetime,
    default_cap: int,
    priority: QueuePriority | None = None,
) -> list[tuple[int, int]]:
    """Give queued conversations, in the queue's order, to the least-loaded online agents under
    their cap (the first priority tier's to a dedicated agent with room, if one is online);
    the (conversation, agent) pairs assigned."""
    priority = priority or QueuePriority()
    # Locked: two web processes sweeping at once would each read the other's assignments
    # as not yet made, and fill an agent past the cap.
    agents = (
        await session.execute(
            select(Staff.id, Staff.max_open, Staff.username)
            .where(
                Staff.availability == "online",
                Staff.role.in_(("agent", "admin")),
                Staff.disabled.is_(False),
            )
            .order_by(Staff.id)
            .with_for_update()
        )
    ).all()
    if not agents:
        return []
    load = await open_load(session)
    caps = {staff_id: cap or default_cap for staff_id, cap, _ in agents}
    dedicated = {staff_id for staff_id, _, name in agents if name in priority.dedicated}
    top = priority.tiers[0] if priority.tiers else None
    waiting = await session.execute(
        select(Conversation.id, Member.tier)
        .join(Member, Member.id == Conversation.member_id)
        .where(Conversation.status == "queued")
        .order_by(*queue_order(priority))
        .limit(200)
    )
    assigned = []
    for conversation_id, tier in waiting:
        free = [s for s in caps if load.get(s, 0) < caps[s]]
        if not free:
            break
        # The dedicated agents first; when they are all full, whoever is free: the lane is
        # about being served sooner, so the member does not wait for one of them.
        if tier == top and (own := [s for s in free if s in dedicated]):
            free = own
        agent = min(free, key=lambda s: (load.get(s, 0), s))
        if await claim_queued(session, conversation_id, agent, now):
            load[agent] = load.get(agent, 0) + 1
            assigned.append((conversation_id, agent))
    return assigned


async def claim_queued(
    session: AsyncSession, conversation_id: int, staff_id: int, now: datetime
) -> bool:
    """Assign a conversation only if it is still queued."""
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.status == "queued")
        .values(status="assigned", assigned_to=staff_id, assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def requeue_unanswered(session: AsyncSession, now: datetime, minutes: int) -> list[int]:
    """Put back in the queue conversations claimed ``minutes`` ago with no reply since."""
    cutoff = now - timedelta(minutes=minutes)
    rows = await session.scalars(
        update(Conversation)
        .where(
            Conversation.status == "assigned",
            Conversation.assigned_at < cutoff,
            or_(
                Conversation.last_agent_reply_at.is_(None),
                Conversation.last_agent_reply_at < Conversation.assigned_at,
            ),
        )
        .values(status="queued", assigned_to=None, assigned_at=None)
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    )
    return list(rows)


async def end_idle(session: AsyncSession, now: datetime, minutes: int) -> list[tuple[int, int]]:
    """Return to the bot assigned conversations silent for ``minutes``, as WeChat's own
    customer service does; (conversation, member) pairs. Queued ones wait: the member is
    still waiting for a person; so do those no agent has answered yet (the claim timeout puts
    them back in the queue instead: after hours, a conversation given to an agent left online
    must wait for the morning, not go back to the bot); and the time is counted from the
    assignment too, so a member who waited long in the queue is not sent back the moment a
    person takes over."""
    cutoff = now - timedelta(minutes=minutes)
    rows = await session.execute(
        update(Conversation)
        .where(
            Conversation.status == "assigned",
            Conversation.last_agent_reply_at.is_not(None),
            Conversation.last_activity_at < cutoff,
            Conversation.assigned_at < cutoff,
        )
        .values(status="returned", outcome="idle", closed_at=now)
        .returning(Conversation.id, Conversation.member_id)
        .execution_options(synchronize_session=False)
    )
    return [(conversation_id, member_id) for conversation_id, member_id in rows]


@dataclass(frozen=True, slots=True)
class AgentDay:
    """One agent's day: conversations ended, and the average and worst waits."""

    day: str
    username: str
    conversations: int
    first_response_avg_s: float | None
    first_response_max_s: float | None
    resolution_avg_s: float | None
    resolution_max_s: float | None


async def agent_report(session: AsyncSession, start: datetime, end_at: datetime) -> list[AgentDay]:
    """First-response and resolution times per agent and local day, for conversations ended
    in [start, end_at), in one grouped statement."""
    day = local_period(session, Conversation.closed_at, start, "day")
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    if dialect == "postgresql":
        first: Any = func.extract("epoch", Conversation.first_response_at - Conversation.queued_at)
        whole = func.extract("epoch", Conversation.closed_at - Conversation.queued_at)
    else:
        first = (
            func.julianday(Conversation.first_response_at) - func.julianday(Conversation.queued_at)
        ) * 86400
        whole = (
            func.julianday(Conversation.closed_at) - func.julianday(Conversation.queued_at)
        ) * 86400
    rows = await session.execute(
        select(
            day.label("day"),
            Staff.username,
            func.count(),
            func.avg(first),
            func.max(first),
            func.avg(whole),
            func.max(whole),
        )
        .join(Staff, Staff.id == Conversation.closed_by)
        .where(
            Conversation.closed_at >= start,
            Conversation.closed_at < end_at,
            Conversation.outcome == "closed",
        )
        .group_by(day, Staff.username)
        .order_by(day, Staff.username)
    )
    return [
        AgentDay(
            str(d),
            name,
            int(n),
            *(None if v is None else round(float(v), 1) for v in (fa, fm, ra, rm)),
        )
        for d, name, n, fa, fm, ra, rm in rows
    ]
