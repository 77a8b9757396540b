"""Rating questions as pushes: after an order, after a service conversation, and the monthly
NPS sample. Each is a ``survey`` delivery (quiet hours and the member's caps apply, see
bot/push/outbox.py) whose payload carries the question; when WeChat accepts the send, the question
is opened in Redis (``question_opener``) and the member's next message may answer it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from bot.wechat.questions import Questions
from messages import rating_copy as copy
from models.deliveries import SURVEY, Claimed, PlannedPush, plan
from models.members import Member
from models.orders import Order
from models.ratings import CSAT, NPS, OpenQuestion
from models.rules import ProgrammeRules

CSAT_ORDER = "csat_order"
CSAT_CONVERSATION = "csat_conversation"
NPS_SAMPLE = "nps_sample"
# An order reported this long after it was paid gets no question: the member has moved on.
LATE_ORDER = timedelta(days=7)


def _question(key: str, kind: str, context: str, ref: str | None) -> dict[str, object]:
    return {"id": key, "kind": kind, "context": context, "ref": ref}


async def plan_after_order(
    session: AsyncSession, rules: ProgrammeRules, order: Order, now: datetime
) -> tuple[list[int], datetime | None]:
    """Plan the CSAT question for a new order, ``after_order_days`` after it was paid; the
    delivery ids and when they are due (nothing for an order reported late)."""
    if now - order.paid_at > LATE_ORDER:
        return [], None
    key = f"{CSAT_ORDER}:{order.shop_order_id}"
    push = PlannedPush(
        order.member_id,
        key,
        {
            "text": copy.CSAT_AFTER_ORDER.format(order=order.shop_order_id),
            "question": _question(key, CSAT, "order", order.shop_order_id),
        },
    )
    due = max(now, order.paid_at + timedelta(days=rules.ratings.after_order_days))
    return await plan(session, CSAT_ORDER, SURVEY, [push], now, not_before=due), due


async def plan_after_conversation(
    session: AsyncSession, member_id: int, conversation_ref: str, now: datetime
) -> list[int]:
    """Plan the CSAT question for a closed service conversation, due at once."""
    key = f"{CSAT_CONVERSATION}:{conversation_ref}"
    push = PlannedPush(
        member_id,
        key,
        {
            "text": copy.CSAT_AFTER_CONVERSATION,
            "question": _question(key, CSAT, "conversation", conversation_ref),
        },
    )
    return await plan(session, CSAT_CONVERSATION, SURVEY, [push], now)


async def plan_nps_sample(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    batch: int = 5000,
) -> int:
    """Ask this month's NPS sample: ``nps_sample_percent`` of subscribed members, chosen by a
    hash of member id and month (set-based, no sort over the members; a different sample each
    month; running again in the month plans nothing new)."""
    percent = rules.ratings.nps_sample_percent
    if percent <= 0:
        return 0
    month = now.astimezone(rules.zone).strftime("%Y-%m")
    salt = int(month.replace("-", ""))
    # Knuth's multiplicative hash mod a 31-bit prime (every database agrees on the arithmetic);
    # each month moves the window by more than half the range, so samples barely overlap.
    bucket = func.mod(Member.id * 2654435761 + salt * 1234567891, 2147483647)
    threshold = int(2147483647 * percent / 100)
    planned = 0
    last_id = 0
    while True:
        async with sessions.begin() as session:
            rows = (
                (
                    await session.execute(
                        select(Member.id)
                        .where(
                            Member.id > last_id,
                            Member.subscribed.is_(True),
                            Member.openid.is_not(None),
                            bucket < threshold,
                        )
                        .order_by(Member.id)
                        .limit(batch)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                return planned
            pushes = [
                PlannedPush(
                    member_id,
                    f"{NPS_SAMPLE}:{month}:{member_id}",
                    {
                        "text": copy.NPS,
                        "question": _question(
                            f"{NPS_SAMPLE}:{month}:{member_id}", NPS, "sample", month
                        ),
                    },
                )
                for member_id in rows
            ]
            ids = await plan(session, NPS_SAMPLE, SURVEY, pushes, now)
        await outbox.enqueue(ids)
        planned += len(ids)
        last_id = rows[-1]


def question_opener(questions: Questions) -> Callable[[Claimed], Awaitable[None]]:
    """The delivery worker's ``on_sent``: open the question a sent push asked."""

    async def open_question(claimed: Claimed) -> None:
        spec = claimed.payload.get("question")
        if spec and claimed.openid:
            await questions.open(claimed.openid, OpenQuestion(**spec, asked_at=time.time()))

    return open_question
