"""Customer service's work list: follow-ups of low ratings and the calls the programme plans.

One list (table ``follow_ups``, the FollowUp model in models/ratings.py) of things to do about
a member, each with an assignee, a due time, attempts (接通 or 未接通, with a note) and an
outcome that closes it:

- ``low_rating``: opened by a low score (models/ratings.py), due ``low_rating_due_hours`` later;
- ``at_risk_call``: 电话回访 of a 流失风险 member who spent at least ``at_risk_min_spend_fen``
  (seed 002), planned once per member and month;
- ``high_ticket_call``: the quarterly call to a high-ticket member (seed 001: 高客单价客户每季度
  1次电话回访), planned once per member and quarter.

``plan_calls`` (the monthly ``callbacks`` job) is set-based: one INSERT … SELECT per purpose,
made idempotent by the unique (member, purpose, period). A member whose call of the same
purpose is still open gets no second one: the open one is the work still to do.

Figures (models/figures.py, and the work list's own summary): the call-connection rate
(回访接通率) is connected attempts ÷ attempts made in the period; the completion rate is the
follow-ups due in the period closed by their due time ÷ those due in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    String,
    Subquery,
    and_,
    case,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.members import Member
from models.orders import Order
from models.ratings import LOW_RATING, FollowUp
from models.rules import ProgrammeRules
from models.staff import Staff

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
AT_RISK_CALL = "at_risk_call"
HIGH_TICKET_CALL = "high_ticket_call"
PURPOSES = (LOW_RATING, AT_RISK_CALL, HIGH_TICKET_CALL)
# How a follow-up ends: the member's matter settled, never reached, or they wanted nothing.
OUTCOMES = ("resolved", "unreachable", "declined")
OPEN, CLOSED = "open", "closed"


class FollowUpAttempt(Base):
    """One try to reach the member about a follow-up: connected (接通) or not, and a note."""

    __tablename__ = "follow_up_attempts"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    follow_up_id: Mapped[int] = mapped_column(ForeignKey("follow_ups.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    connected: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FollowUpRefused(Exception):
    """The follow-up cannot take this action (``reason``: missing, closed, not_yours,
    bad_outcome); nothing was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def month_period(rules: ProgrammeRules, now: datetime) -> str:
    """The local month ``now`` falls in (2026-12): an at-risk call's period."""
    return f"{now.astimezone(rules.zone):%Y-%m}"


def quarter_period(rules: ProgrammeRules, now: datetime) -> str:
    """The local quarter ``now`` falls in (2026-Q4): a high-ticket call's period."""
    local = now.astimezone(rules.zone)
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"


async def plan_calls(session: AsyncSession, rules: ProgrammeRules, now: datetime) -> dict[str, int]:
    """Put this period's calls on the work list, set-based; how many were added per purpose.
    Safe to run again: a member is listed once per purpose and period."""
    callbacks = rules.callbacks
    net = Order.amount_fen - Order.refunded_fen
    stats = (
        select(
            Order.member_id.label("member_id"),
            func.sum(net).label("spend"),
            func.count().label("orders"),
        )
        .where(
            Order.paid_at > now - relativedelta(months=callbacks.spend_months),
            Order.paid_at <= now,
            net > 0,
        )
        .group_by(Order.member_id)
        .subquery()
    )
    planned = {AT_RISK_CALL: 0, HIGH_TICKET_CALL: 0}
    if callbacks.at_risk_min_spend_fen:
        planned[AT_RISK_CALL] = await _plan(
            session,
            AT_RISK_CALL,
            month_period(rules, now),
            now + timedelta(days=callbacks.at_risk_due_days),
            now,
            stats,
            and_(Member.segment == "at_risk", stats.c.spend >= callbacks.at_risk_min_spend_fen),
        )
    if callbacks.high_ticket_min_aov_fen:
        planned[HIGH_TICKET_CALL] = await _plan(
            session,
            HIGH_TICKET_CALL,
            quarter_period(rules, now),
            now + timedelta(days=callbacks.high_ticket_due_days),
            now,
            stats,
            and_(
                stats.c.orders >= callbacks.high_ticket_min_orders,
                # The average order without a division: spend ≥ threshold × orders.
                stats.c.spend >= stats.c.orders * callbacks.high_ticket_min_aov_fen,
            ),
        )
    return planned


async def _plan(
    session: AsyncSession,
    purpose: str,
    period: str,
    due_at: datetime,
    now: datetime,
    stats: Subquery,
    rule: ColumnElement[bool],
) -> int:
    earlier = aliased(FollowUp)
    still_open = exists().where(
        earlier.member_id == Member.id, earlier.purpose == purpose, earlier.status == OPEN
    )
    chosen = (
        select(
            Member.id,
            literal(purpose),
            literal(period),
            literal(OPEN),
            literal(due_at, UTCDateTime),
            literal(now, UTCDateTime),
        )
        .join(stats, stats.c.member_id == Member.id)
        .where(rule, Member.phone.is_not(None), Member.phone != "", ~still_open)
    )
    columns = ["member_id", "purpose", "period", "status", "due_at", "created_at"]
    stmt = (
        dialect_insert(session)(FollowUp)
        .from_select(columns, chosen)
        .on_conflict_do_nothing(index_elements=["member_id", "purpose", "period"])
    )
    return (await session.execute(stmt)).rowcount


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A follow-up as the work list shows it."""

    follow_up: FollowUp
    member: Member
    assignee: str | None
    attempts: int
    connected: int


async def work_list(
    session: AsyncSession,
    *,
    status: str = OPEN,
    assigned_to: int | None = None,
    overdue_at: datetime | None = None,
    purpose: str | None = None,
    member_id: int | None = None,
    limit: int = 200,
) -> list[WorkItem]:
    """Follow-ups with ``status``, soonest due first (closed ones: latest closed first),
    optionally only one assignee's, only those due before ``overdue_at``, of one purpose or
    of one member."""
    counts = (
        select(
            FollowUpAttempt.follow_up_id.label("id"),
            func.count().label("attempts"),
            func.count(case((FollowUpAttempt.connected.is_(True), 1))).label("connected"),
        )
        .group_by(FollowUpAttempt.follow_up_id)
        .subquery()
    )
    query = (
        select(
            FollowUp,
            Member,
            Staff.username,
            func.coalesce(counts.c.attempts, 0),
            func.coalesce(counts.c.connected, 0),
        )
        .join(Member, Member.id == FollowUp.member_id)
        .outerjoin(Staff, Staff.id == FollowUp.assigned_to)
        .outerjoin(counts, counts.c.id == FollowUp.id)
        .where(FollowUp.status == status)
    )
    if assigned_to is not None:
        query = query.where(FollowUp.assigned_to == assigned_to)
    if overdue_at is not None:
        query = query.where(FollowUp.due_at < overdue_at)
    if purpose is not None:
        query = query.where(FollowUp.purpose == purpose)
    if member_id is not None:
        query = query.where(FollowUp.member_id == member_id)
    order = (
        (FollowUp.due_at, FollowUp.id)
        if status == OPEN
        else (FollowUp.closed_at.desc(), FollowUp.id.desc())
    )
    rows = await session.execute(query.order_by(*order).limit(limit))
    return [WorkItem(*row) for row in rows]


async def attempts_of(
    session: AsyncSession, follow_up_id: int
) -> list[tuple[FollowUpAttempt, str | None]]:
    """The attempts on one follow-up, oldest first, with who made each."""
    rows = await session.execute(
        select(FollowUpAttempt, Staff.username)
        .outerjoin(Staff, Staff.id == FollowUpAttempt.staff_id)
        .where(FollowUpAttempt.follow_up_id == follow_up_id)
        .order_by(FollowUpAttempt.id)
    )
    return [(attempt, name) for attempt, name in rows]


async def _open_for(
    session: AsyncSession, follow_up_id: int, staff_id: int, *, any_assignee: bool
) -> FollowUp:
    """The open follow-up, locked; taken by ``staff_id`` when nobody had it. Someone else's
    is refused unless ``any_assignee`` (an admin)."""
    follow_up = await session.get(FollowUp, follow_up_id, with_for_update=True)
    if follow_up is None:
        raise FollowUpRefused("missing")
    if follow_up.status != OPEN:
        raise FollowUpRefused("closed")
    if follow_up.assigned_to is None:
        follow_up.assigned_to = staff_id
    elif follow_up.assigned_to != staff_id and not any_assignee:
        raise FollowUpRefused("not_yours")
    return follow_up


async def assign(
    session: AsyncSession, follow_up_id: int, staff_id: int, to_staff_id: int, *, admin: bool
) -> FollowUp:
    """Give an open follow-up to ``to_staff_id``: anyone may take an unassigned one for
    themselves; an admin may give any to anyone."""
    follow_up = await _open_for(session, follow_up_id, staff_id, any_assignee=admin)
    if not admin and to_staff_id != staff_id:
        raise FollowUpRefused("not_yours")
    follow_up.assigned_to = to_staff_id
    return follow_up


async def record_attempt(
    session: AsyncSession,
    follow_up_id: int,
    staff_id: int,
    connected: bool,
    note: str,
    now: datetime,
    *,
    admin: bool = False,
) -> FollowUpAttempt:
    """Record a try to reach the member (the follow-up becomes theirs if it was nobody's)."""
    await _open_for(session, follow_up_id, staff_id, any_assignee=admin)
    attempt = FollowUpAttempt(
        follow_up_id=follow_up_id, staff_id=staff_id, connected=connected, note=note[:500], at=now
    )
    session.add(attempt)
    await session.flush()
    return attempt


async def close_follow_up(
    session: AsyncSession,
    follow_up_id: int,
    staff_id: int,
    outcome: str,
    note: str,
    now: datetime,
    *,
    admin: bool = False,
) -> FollowUp:
    """Close the follow-up with ``outcome`` (one of OUTCOMES) and a note."""
    if outcome not in OUTCOMES:
        raise FollowUpRefused("bad_outcome")
    follow_up = await _open_for(session, follow_up_id, staff_id, any_assignee=admin)
    follow_up.status, follow_up.outcome = CLOSED, outcome
    follow_up.outcome_note = note[:500] or None
    follow_up.closed_at, follow_up.closed_by = now, staff_id
    return follow_up


@dataclass(frozen=True, slots=True)
class ServiceRates:
    """The work list's figures over a period: attempts and connected ones (回访接通率), and the
    follow-ups due in it and those closed by their due time (完成率)."""

    attempts: int
    connected: int
    due: int
    completed: int

    @property
    def connection_percent(self) -> float | None:
        return round(100 * self.connected / self.attempts, 1) if self.attempts else None

    @property
    def completion_percent(self) -> float | None:
        return round(100 * self.completed / self.due, 1) if self.due else None


# Shared with models/figures.py, so the figure and the work list's summary agree.
CONNECTED = case((FollowUpAttempt.connected.is_(True), 1))
COMPLETED_IN_TIME = case(
    (and_(FollowUp.status == CLOSED, FollowUp.closed_at <= FollowUp.due_at), 1)
)


async def service_rates(session: AsyncSession, start: datetime, end: datetime) -> ServiceRates:
    """Connection and completion over [start, end)."""
    attempts, connected = (
        await session.execute(
            select(func.count(), func.count(CONNECTED)).where(
                FollowUpAttempt.at >= start, FollowUpAttempt.at < end
            )
        )
    ).one()
    due, completed = (
        await session.execute(
            select(func.count(), func.count(COMPLETED_IN_TIME)).where(
                FollowUp.due_at >= start, FollowUp.due_at < end
            )
        )
    ).one()
    return ServiceRates(attempts, connected, due, completed)


async def unassign_staff(session: AsyncSession, staff_id: int) -> int:
    """Put a disabled account's open follow-ups back on the shared list; how many."""
    result = await session.execute(
        update(FollowUp)
        .where(FollowUp.assigned_to == staff_id, FollowUp.status == OPEN)
        .values(assigned_to=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
