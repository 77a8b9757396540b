"""Customer service's own figures over a period (the console's 服务指标 page): pickup within
target, cases resolved within their due time, cases by category, the backlog now, and the same
per agent. Three grouped statements, whatever the number of conversations and cases.

- pickup: conversations queued in [start, end) whose first reply came within
  ``pickup_minutes``, of those queued; per agent by who has (or had) the conversation;
- resolution: cases opened in [start, end) closed by their due time, of those opened (a case
  still open counts against it once past due, and as not yet resolved before);
- backlog: cases open now, and those of them past due; per agent by owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.cases import CATEGORIES, ServiceCase, overdue
from models.conversations import Conversation
from models.staff import Staff


@dataclass(slots=True)
class Tally:
    """Counts for one agent, one category, or everyone."""

    queued: int = 0
    picked_in_target: int = 0
    cases_opened: int = 0
    cases_in_due: int = 0
    cases_closed: int = 0
    open_now: int = 0
    overdue_now: int = 0

    @property
    def pickup_rate(self) -> float | None:
        """Percent of conversations picked up within the target (None: none queued)."""
        return 100.0 * self.picked_in_target / self.queued if self.queued else None

    @property
    def in_due_rate(self) -> float | None:
        """Percent of cases opened that were resolved by their due time."""
        return 100.0 * self.cases_in_due / self.cases_opened if self.cases_opened else None


@dataclass(slots=True)
class ServiceFigures:
    """The period's figures: overall, by case category, and per agent (by username)."""

    start: datetime
    end: datetime
    total: Tally = field(default_factory=Tally)
    by_category: dict[str, Tally] = field(default_factory=dict)
    by_agent: dict[str, Tally] = field(default_factory=dict)


def _seconds(session: AsyncSession, later: Any, earlier: Any) -> Any:
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400


async def service_figures(
    session: AsyncSession, start: datetime, end: datetime, now: datetime, pickup_minutes: int
) -> ServiceFigures:
    """Figures for [start, end) and the backlog at ``now`` (module docstring)."""
    figures = ServiceFigures(start, end, by_category={c: Tally() for c in CATEGORIES})
    names = {i: name for i, name in await session.execute(select(Staff.id, Staff.username))}

    def agent(staff_id: int | None) -> Tally | None:
        if staff_id is None or staff_id not in names:
            return None
        return figures.by_agent.setdefault(names[staff_id], Tally())

    c = Conversation
    waited = _seconds(session, c.first_response_at, c.queued_at)
    rows = await session.execute(
        select(
            c.assigned_to,
            func.count(),
            func.count(
                case((c.first_response_at.is_not(None) & (waited <= pickup_minutes * 60), 1))
            ),
        )
        .where(c.queued_at >= start, c.queued_at < end)
        .group_by(c.assigned_to)
    )
    for staff_id, queued, in_target in rows:
        for tally in (figures.total, agent(staff_id)):
            if tally is not None:
                tally.queued += queued
                tally.picked_in_target += in_target

    s = ServiceCase
    closed = s.status == "closed"
    rows = await session.execute(
        select(
            s.owner_id,
            s.category,
            func.count(),
            func.count(case((closed & (s.closed_at <= s.due_at), 1))),
            func.count(case((closed, 1))),
        )
        .where(s.opened_at >= start, s.opened_at < end)
        .group_by(s.owner_id, s.category)
    )
    for staff_id, category, opened, in_due, done in rows:
        for tally in (figures.total, figures.by_category.get(category), agent(staff_id)):
            if tally is not None:
                tally.cases_opened += opened
                tally.cases_in_due += in_due
                tally.cases_closed += done

    rows = await session.execute(
        select(s.owner_id, s.category, func.count(), func.count(case((overdue(now), 1))))
        .where(s.status == "open")
        .group_by(s.owner_id, s.category)
    )
    for staff_id, category, open_now, late in rows:
        for tally in (figures.total, figures.by_category.get(category), agent(staff_id)):
            if tally is not None:
                tally.open_now += open_now
                tally.overdue_now += late
    figures.by_agent = dict(sorted(figures.by_agent.items()))
    return figures
