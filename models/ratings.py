"""满意度: members' CSAT (1-5) and NPS (0-10) answers, and follow-ups for low scores.

A rating keeps the member's tier and segment as they were when it was given, so the figures by
tier and segment describe who answered, not who the member became later. Each question has an
id; the rating's unique ``question_id`` makes a second answer to the same question (two
messages racing, a retry) store nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert, local_period
from models.events import record_event
from models.members import Member
from models.rules import ProgrammeRules

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
CSAT, NPS = "csat", "nps"
SCALES = {CSAT: (1, 5), NPS: (0, 10)}
# The member event a low score comes with (shop systems subscribe to it).
LOW_RATING_EVENT = "low_rating"
GroupBy = Literal["tier", "segment", "month"]
# A follow-up's purpose when a low score opened it.
LOW_RATING = "low_rating"


class Rating(Base):
    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    question_id: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(String(500))
    # What the question was about: an order (its shop id), a conversation, the monthly sample.
    context: Mapped[str] = mapped_column(String(16))
    context_ref: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str | None] = mapped_column(String(16))
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FollowUp(Base):
    """One thing customer service is to do about a member (the console's work list,
    models/follow_ups.py): a low score to follow up (``purpose`` low_rating, with the rating's
    ``kind``, ``score`` and ``context``), or a call the monthly job planned (at_risk_call,
    high_ticket_call) for one ``period`` (YYYY-MM, or YYYY-Qn), once per member."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        UniqueConstraint("member_id", "purpose", "period", name="uq_follow_ups_member_purpose"),
        Index("ix_follow_ups_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    rating_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default=LOW_RATING)
    period: Mapped[str | None] = mapped_column(String(8))
    kind: Mapped[str | None] = mapped_column(String(8))
    score: Mapped[int | None] = mapped_column(Integer)
    context: Mapped[str | None] = mapped_column(String(16))
    context_ref: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_note: Mapped[str | None] = mapped_column(String(500))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class OpenQuestion:
    """``kind``: csat, nps, or comment (the free text after a score)."""

    id: str
    kind: str
    context: str  # order, conversation, sample
    ref: str | None
    asked_at: float  # epoch seconds
    reprompted: bool = False
    rating_id: int | None = None  # the rating a comment belongs to
    answered: bool = False  # kept a short while after its answer (bot/wechat/questions.py)

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> OpenQuestion | None:
        """The question, or None for a value this version cannot read."""
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError):
            return None


def is_low(rules: ProgrammeRules, kind: str, score: int) -> bool:
    """A score that opens a follow-up (CSAT ≤ 2, NPS ≤ 6 by default)."""
    limit = rules.ratings.csat_low if kind == CSAT else rules.ratings.nps_low
    return score <= limit


async def record_rating(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    question: OpenQuestion,
    score: int,
    comment: str,
    now: datetime,
) -> tuple[Rating | None, FollowUp | None]:
    """Store the member's answer to ``question`` (and a follow-up when the score is low);
    (None, None) when this question was answered already."""
    low, high = SCALES[question.kind]
    if not low <= score <= high:
        raise ValueError(f"{question.kind} score {score} outside {low}-{high}")
    member = await session.get_one(Member, member_id)
    stmt = (
        dialect_insert(session)(Rating)
        .values(
            question_id=question.id,
            member_id=member_id,
            kind=question.kind,
            score=score,
            comment=comment[:500] or None,
            context=question.context,
            context_ref=question.ref,
            tier=member.tier,
            segment=member.segment,
            asked_at=datetime.fromtimestamp(question.asked_at, UTC),
            answered_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Rating.question_id])
        .returning(Rating)
    )
    rating = await session.scalar(stmt)
    if rating is None:
        return None, None
    follow_up = None
    if is_low(rules, question.kind, score):
        follow_up = FollowUp(
            rating_id=rating.id,
            member_id=member_id,
            purpose=LOW_RATING,
            kind=question.kind,
            score=score,
            context=question.context,
            context_ref=question.ref,
            status="open",
            due_at=now + timedelta(hours=rules.callbacks.low_rating_due_hours),
            created_at=now,
        )
        session.add(follow_up)
        await record_event(
            session,
            member_id,
            LOW_RATING_EVENT,
            {
                "rating_id": rating.id,
                "kind": question.kind,
                "score": score,
                "comment": rating.comment,
                "context": question.context,
            },
            now,
        )
        await session.flush()
    return rating, follow_up


async def add_comment(session: AsyncSession, rating_id: int, comment: str) -> bool:
    """Attach the member's comment to their rating (once)."""
    result = await session.execute(
        update(Rating)
        .where(Rating.id == rating_id, Rating.comment.is_(None))
        .values(comment=comment[:500])
    )
    return result.rowcount > 0


@dataclass(frozen=True, slots=True)
class SatisfactionRow:
    """One group of the satisfaction report."""

    group: str
    csat_count: int
    csat_satisfied: int  # 4s and 5s
    csat_percent: float | None
    nps_count: int
    promoters: int  # 9s and 10s
    detractors: int  # 0 to 6
    nps: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "csat": {
                "count": self.csat_count,
                "satisfied": self.csat_satisfied,
                "percent": self.csat_percent,
            },
            "nps": {
                "count": self.nps_count,
                "promoters": self.promoters,
                "detractors": self.detractors,
                "score": self.nps,
            },
        }


async def satisfaction_report(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    group_by: GroupBy | None,
) -> list[SatisfactionRow]:
    """CSAT % (share of 4-5 among CSAT answers) and NPS (% promoters − % detractors) of the
    ratings answered in [start, end), in one grouped statement."""
    if group_by == "tier":
        group: Any = Rating.tier
    elif group_by == "segment":
        group = func.coalesce(Rating.segment, "none")
    elif group_by == "month":
        group = local_period(session, Rating.answered_at, start, "month")
    else:
        group = literal("all")
    is_csat, is_nps = Rating.kind == CSAT, Rating.kind == NPS
    rows = await session.execute(
        select(
            group.label("grp"),
            func.count(case((is_csat, 1))),
            func.count(case((is_csat & (Rating.score >= 4), 1))),
            func.count(case((is_nps, 1))),
            func.count(case((is_nps & (Rating.score >= 9), 1))),
            func.count(case((is_nps & (Rating.score <= 6), 1))),
        )
        .where(Rating.answered_at >= start, Rating.answered_at < end)
        .group_by(group)
        .order_by(group)
    )
    return [_row(str(grp), *counts) for grp, *counts in rows]


def _row(
    group: str, csat: int, satisfied: int, nps: int, promoters: int, detractors: int
) -> SatisfactionRow:
    return SatisfactionRow(
        group=group,
        csat_count=csat,
        csat_satisfied=satisfied,
        csat_percent=round(100 * satisfied / csat, 1) if csat else None,
        nps_count=nps,
        promoters=promoters,
        detractors=detractors,
        nps=round(100 * (promoters - detractors) / nps, 1) if nps else None,
    )
