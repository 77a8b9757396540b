"""Running a set-based rule over every member, one id range per transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefit_settings import Gift
from models.benefits.engine import SetGrant, grant_batch
from models.benefits.tables import BenefitGrant
from models.ledger import POINTS_CHANGED
from models.members import Member
from models.rules import ProgrammeRules
from models.tier_review import BATCH, member_id_ranges

# Called with each batch's new delivery ids once the batch is committed (to enqueue them).
OnBatch = Callable[[list[int]], Awaitable[None]]


@dataclass(slots=True)
class RuleRun:
    """What one run of a set-based rule did, over all batches."""

    rule: str
    granted: int = 0
    held_out: int = 0
    pushes: int = 0
    budget_spent: bool = False
    paused: bool = False
    by_gift: dict[str, int] = field(default_factory=dict)

    def add(self, gift_key: str, granted: int, held_out: int, pushes: int) -> None:
        self.granted += granted
        self.held_out += held_out
        self.pushes += pushes
        self.by_gift[gift_key] = self.by_gift.get(gift_key, 0) + granted

    def summary(self) -> str:
        """One line for the job log."""
        if self.paused:
            return f"{self.rule}: paused, nothing issued"
        text = (
            f"{self.rule}: {self.granted} granted, {self.held_out} held out, {self.pushes} pushes"
        )
        return text + (" (monthly budget spent)" if self.budget_spent else "")


def not_granted(code: str, period: str, within: tuple[int, int] | None = None) -> Any:
    """Members without rule ``code``'s grant for ``period`` (holdouts included: they count);
    ``within``: only members in the id range ``(after, last]`` are asked about."""
    members = Member.__table__
    g = BenefitGrant.__table__.c
    bounds = () if within is None else (g.member_id > within[0], g.member_id <= within[1])
    # The range is said again on the grants: PostgreSQL does not carry it over from the
    # members, and would otherwise read (and sort) every grant of the period for each batch.
    return ~exists().where(g.rule == code, g.period == period, g.member_id == members.c.id, *bounds)


# Batches run this many at a time on PostgreSQL: a batch's statement keeps one database core
# busy while the caller waits, and batches are disjoint ranges of member ids, each locking only
# its own members (in id order), so side by side they never wait on each other. One at a time
# on SQLite (one writer) and where a monthly budget is kept (every batch takes its row).
SIDE_BY_SIDE = 2


async def run_gift(
    session: AsyncSession,
    rules: ProgrammeRules,
    run: RuleRun,
    settings: BaseModel,
    *,
    period: str,
    gift_key: str,
    gift: Gift,
    conditions: list[Any],
    reason: str,
    now: datetime,
    push: tuple[str, str, dict[str, Any]] | None,
    holdout_percent: int = 0,
    on_batch: OnBatch | None = None,
    batch: int = BATCH,
) -> None:
    """Grant ``gift`` under ``run.rule`` for ``period`` to every member meeting
    ``conditions`` (on the members table) who has no grant for it yet, ``batch`` members per
    transaction (the session is committed after each; on PostgreSQL without a budget,
    ``SIDE_BY_SIDE`` batches at a time, the others in sessions like ``session``). Stops when
    the budget is spent."""
    members = Member.__table__
    budgeted = int(getattr(settings, "monthly_budget", 0)) > 0
    dialect = session.bind.dialect.name if session.bind is not None else ""
    alone = budgeted or dialect != "postgresql"
    # Side by side, the ranges are read in a session of their own (one statement at a time
    # per session).
    reader = session if alone else _side_session(session)
    ranges = member_id_ranges(reader, batch)
    next_range = asyncio.Lock()  # one async generator: one caller at a time

    async def work(worker: AsyncSession) -> None:
        while not run.budget_spent:
            async with next_range:
                bounds = await anext(ranges, None)
            if bounds is None:
                return
            after, last = bounds
            candidates = select(members.c.id).where(
                members.c.id > after,
                members.c.id <= last,
                *conditions,
                not_granted(run.rule, period, (after, last)),
            )
            job = SetGrant(
                run.rule,
                settings,
                period,
                gift,
                gift_key,
                candidates,
                after,
                last,
                reason,
                holdout_percent,
                push,
            )
            outcome = await grant_batch(worker, rules, job, now)
            await worker.commit()
            run.add(gift_key, outcome.granted, outcome.held_out, len(outcome.delivery_ids))
            if on_batch is not None and outcome.delivery_ids:
                await on_batch(outcome.delivery_ids)
            if outcome.budget_spent:
                run.budget_spent = True

    if alone:
        await work(session)
        return
    others = [_side_session(session) for _ in range(SIDE_BY_SIDE - 1)]
    try:
        await asyncio.gather(work(session), *(work(other) for other in others))
    finally:
        for other in [reader, *others]:
            await other.close()


def _side_session(session: AsyncSession) -> AsyncSession:
    """A session like ``session``: the same engine, session class and hooks (the points
    cache is told of what its commits move), none of its pending state."""
    info = {key: value for key, value in session.info.items() if key != POINTS_CHANGED}
    return AsyncSession(
        bind=session.bind,
        expire_on_commit=False,
        sync_session_class=type(session.sync_session),
        info=info,
    )
