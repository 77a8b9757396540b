"""One path for a paid order, whichever way it arrives: the API, a CSV import or the demo.

An order implies more than its row: the points it earns and the tier it lifts
(``models.order_posting.record_order``), a referred member's return window on their first order
(``models.referrals.note_first_order``) and the satisfaction question after it
(``scheduler.rating_questions.plan_after_order``). It lives here, above ``models/`` and
``scheduler/``, because it needs both; the API, the importer and the demo call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from models.members import Member
from models.order_posting import OrderOutcome, record_order
from models.orders import OrderIn
from models.referrals import note_first_order
from models.rules import ProgrammeRules
from scheduler.rating_questions import plan_after_order


@dataclass(frozen=True, slots=True)
class TakenOrder:
    """What taking an order did; ``questions`` are delivery ids to enqueue once committed,
    due from ``questions_due``."""

    outcome: OrderOutcome
    questions: list[int] = field(default_factory=list)
    questions_due: datetime | None = None


async def take_order(
    session: AsyncSession, rules: ProgrammeRules, member: Member, data: OrderIn, now: datetime
) -> TakenOrder:
    """Record a paid order and everything it implies, in the caller's transaction.

    The caller has checked the order (``models.orders.order_problem``) and holds ``member``'s
    row lock, so the member's orders are judged one at a time. The same order again writes
    nothing and plans nothing; the same id with other contents raises OrderConflict. The
    question's delivery rows are written here; enqueueing them after the commit is the
    caller's (the API does it at once; rows nobody enqueues are put on the stream by the
    delivery workers' sweep once due).
    """
    outcome = await record_order(session, rules, member, data, now)
    if outcome.replayed:
        return TakenOrder(outcome)
    await note_first_order(session, rules, member.id, outcome.order, now)
    questions, due = await plan_after_order(session, rules, outcome.order, now)
    return TakenOrder(outcome, questions, due)
