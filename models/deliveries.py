"""The outbox: one row per (purpose, member) push, written before anything is sent.

A row's ``dedupe_key`` (e.g. ``tier_upgraded:<event id>``, ``birthday:2026:<member>``) is unique,
so planning the same push twice plans it once. The row is the record of what happened to the
push; the Redis stream that workers read (messages/outbox.py) only carries row ids.

Status, in order: ``queued`` (waiting, perhaps until ``not_before``), ``sending`` (a worker has
claimed it and is calling WeChat), then one of ``sent``, ``failed`` (with ``errcode``) or
``skipped`` (with ``reason``: ``no_channel``, ``unsubscribed``, ``opted_out``, ``interrupted``,
…). For a template message WeChat reports the final outcome later (TEMPLATESENDJOBFINISH), kept in
``final_status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.members import Member

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")

SERVICE, MARKETING = "service", "marketing"
# A question to the member (a rating): the channels of a service notification, but quiet hours
# and the marketing caps apply, as to anything the member did not ask for.
SURVEY = "survey"


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_waiting",
            "not_before",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index("ix_deliveries_purpose_status", "purpose", "status"),
        # Who has used their mass sends this month (the campaign audience preview).
        Index(
            "ix_deliveries_mass_sent",
            "updated_at",
            "member_id",
            postgresql_where=text("channel = 'mass' AND status = 'sent'"),
            sqlite_where=text("channel = 'mass' AND status = 'sent'"),
        ),
        # Pushes of the last 30 days by purpose (the dashboard).
        Index("ix_deliveries_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))  # service | marketing
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    channel: Mapped[str | None] = mapped_column(String(16))  # template | custom
    reason: Mapped[str | None] = mapped_column(String(64))
    errcode: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    wechat_msgid: Mapped[int | None] = mapped_column(BigInteger, index=True)
    final_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TemplateReceipt(Base):
    """WeChat's final word on a template message, kept even when it arrives before the row
    knows its msgid (the send's answer and the callback race)."""

    __tablename__ = "template_receipts"

    msgid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class PlannedPush:
    """One push to plan: who, the unique key, and what to say (rendered copy and fields)."""

    member_id: int
    dedupe_key: str
    payload: dict[str, Any]


async def plan(
    session: AsyncSession,
    purpose: str,
    category: str,
    pushes: Sequence[PlannedPush],
    now: datetime,
    not_before: datetime | None = None,
) -> list[int]:
    """Write the rows for ``pushes`` in one statement; returns the ids of the new rows (a key
    planned before is left alone, so a rerun plans nothing)."""
    if category not in (SERVICE, MARKETING, SURVEY):
        raise ValueError(f"unknown delivery category {category!r}")
    if not pushes:
        return []
    insert = dialect_insert(session)
    rows = [
        {
            "dedupe_key": push.dedupe_key,
            "purpose": purpose,
            "category": category,
            "member_id": push.member_id,
            "payload": push.payload,
            "status": "queued",
            "attempts": 0,
            "not_before": not_before or now,
            "created_at": now,
            "updated_at": now,
        }
        for push in pushes
    ]
    # One executemany on the Core table: SQLAlchemy sends it as a few multi-row INSERTs
    # ("insertmanyvalues", cached once compiled) instead of compiling one statement with ten
    # parameters per row each time (which also stopped at 3,276 rows, asyncpg's 32,767).
    table = Delivery.__table__
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
        .returning(table.c.id)
    )
    connection = await session.connection()
    return list((await connection.execute(stmt, rows)).scalars().all())


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker now owns, with what it needs to send it."""

    id: int
    purpose: str
    category: str
    payload: dict[str, Any]
    attempts: int
    member_id: int
    openid: str | None
    subscribed: bool
    # The member said 退订: marketing pushes are skipped.
    opted_out: bool = False


async def claim_many(
    session: AsyncSession, delivery_ids: Sequence[int], now: datetime
) -> list[Claimed]:
    """Take due, queued deliveries for sending (``sending``, one more attempt each), in two
    statements; those left out are another worker's, finished, or not due."""
    if not delivery_ids:
        return []
    table, members = Delivery.__table__, Member.__table__
    rows = (
        await session.execute(
            update(table)
            .where(
                table.c.id.in_(list(delivery_ids)),
                table.c.status == "queued",
                table.c.not_before <= now,
            )
            .values(status="sending", attempts=table.c.attempts + 1, updated_at=now)
            .returning(
                table.c.id,
                table.c.purpose,
                table.c.category,
                table.c.payload,
                table.c.attempts,
                table.c.member_id,
            )
        )
    ).all()
    if not rows:
        return []
    found = {
        member_id: (openid, subscribed, opted_out_at is not None)
        for member_id, openid, subscribed, opted_out_at in await session.execute(
            select(
                members.c.id,
                members.c.openid,
                members.c.subscribed,
                members.c.marketing_opted_out_at,
            ).where(members.c.id.in_({row.member_id for row in rows}))
        )
    }
    claimed = []
    for row in rows:
        openid, subscribed, opted_out = found.get(row.member_id, (None, False, False))
        claimed.append(
            Claimed(
                id=row.id,
                purpose=row.purpose,
                category=row.category,
                payload=row.payload,
                attempts=row.attempts,
                member_id=row.member_id,
                openid=openid,
                subscribed=bool(subscribed),
                opted_out=opted_out,
            )
        )
    return claimed


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed delivery ended: ``sent``, ``failed`` or ``skipped``, and the details."""

    delivery_id: int
    status: str
    channel: str | None = None
    reason: str | None = None
    errcode: int | None = None
    msgid: int | None = None


def _record_statement() -> Any:
    table, receipts = Delivery.__table__, TemplateReceipt.__table__
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.status == "sending")
        .values(
            status=bindparam("b_status"),
            channel=bindparam("b_channel"),
            reason=bindparam("b_reason"),
            errcode=bindparam("b_errcode"),
            wechat_msgid=bindparam("b_msgid"),
            # A receipt can come before the send's answer was recorded (bot/push/receipts.py).
            final_status=select(receipts.c.status)
            .where(receipts.c.msgid == bindparam("b_msgid"))
            .scalar_subquery(),
            sent_at=bindparam("b_sent_at"),
            updated_at=bindparam("b_now"),
        )
    )


_RECORD = _record_statement()


async def record_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], now: datetime
) -> None:
    """Record how claimed deliveries ended, in one executemany (a Core statement built once)."""
    for outcome in outcomes:
        if outcome.status not in ("sent", "failed", "skipped"):
            raise ValueError(f"not a final status: {outcome.status!r}")
    if not outcomes:
        return
    connection = await session.connection()
    await connection.execute(
        _RECORD,
        [
            {
                "b_id": o.delivery_id,
                "b_status": o.status,
                "b_channel": o.channel,
                "b_reason": o.reason,
                "b_errcode": o.errcode,
                "b_msgid": o.msgid,
                "b_sent_at": now if o.status == "sent" else None,
                "b_now": now,
            }
            for o in outcomes
        ],
    )


async def retry_later(
    session: AsyncSession, delivery_id: int, at: datetime, now: datetime, errcode: int | None
) -> None:
    """Put a claimed delivery back in the queue until ``at`` (a transient failure)."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "sending")
        .values(status="queued", not_before=at, errcode=errcode, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def defer(session: AsyncSession, delivery_id: int, at: datetime, now: datetime) -> None:
    """Put a claimed delivery back until ``at`` without counting the attempt (quiet hours)."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "sending")
        .values(status="queued", not_before=at, attempts=Delivery.attempts - 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def finish_many(
    session: AsyncSession,
    delivery_ids: Sequence[int],
    status: str,
    now: datetime,
    *,
    channel: str | None = None,
    reason: str | None = None,
    errcode: int | None = None,
    msgid: int | None = None,
) -> None:
    """Record one outcome for claimed deliveries (one, or a mass send's), in one statement.
    A template receipt that arrived before the msgid was recorded is applied at once."""
    if status not in ("sent", "failed", "skipped"):
        raise ValueError(f"not a final status: {status!r}")
    receipt = (
        select(TemplateReceipt.status).where(TemplateReceipt.msgid == msgid).scalar_subquery()
        if msgid is not None
        else None
    )
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(delivery_ids)), Delivery.status == "sending")
        .values(
            status=status,
            channel=channel,
            reason=reason,
            errcode=errcode,
            wechat_msgid=msgid,
            final_status=receipt,
            sent_at=now if status == "sent" else None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


async def abandon_stale_sending(session: AsyncSession, before: datetime, now: datetime) -> int:
    """Deliveries left ``sending`` since before ``before`` (a worker died holding them outside
    the stream, e.g. in a mass batch): recorded as skipped ``interrupted``, never resent."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.updated_at < before)
        .values(status="skipped", reason="interrupted", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def abandon_interrupted(
    session: AsyncSession, delivery_ids: Iterable[int], now: datetime
) -> int:
    """Mark deliveries a dead worker left in ``sending`` as skipped (``interrupted``).

    The worker may have died before or after WeChat accepted the message, and WeChat's send
    APIs carry no idempotency key, so sending again could send twice: a push is never sent
    twice, and an interrupted one is recorded, not guessed at.
    """
    ids = list(delivery_ids)
    if not ids:
        return 0
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == "sending")
        .values(status="skipped", reason="interrupted", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def due_queued(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Ids of queued deliveries that are due (to put on the stream again after a delay or a
    lost stream), oldest first."""
    rows = await session.scalars(
        select(Delivery.id)
        .where(Delivery.status == "queued", Delivery.not_before <= now)
        .order_by(Delivery.not_before, Delivery.id)
        .limit(limit)
    )
    return list(rows.all())


async def record_receipts(
    session: AsyncSession, receipts: Sequence[tuple[int, str]], now: datetime
) -> int:
    """Store a batch of TEMPLATESENDJOBFINISH outcomes and apply them to their deliveries, in
    two statements whatever the batch size; returns the deliveries updated."""
    if not receipts:
        return 0
    latest = dict(receipts)
    insert = dialect_insert(session)
    await session.execute(
        insert(TemplateReceipt)
        .values(
            [
                {"msgid": msgid, "status": status, "received_at": now}
                for msgid, status in latest.items()
            ]
        )
        .on_conflict_do_nothing(index_elements=[TemplateReceipt.msgid])
    )
    receipt = (
        select(TemplateReceipt.status)
        .where(TemplateReceipt.msgid == Delivery.wechat_msgid)
        .scalar_subquery()
    )
    result = await session.execute(
        update(Delivery)
        .where(and_(Delivery.wechat_msgid.in_(list(latest)), Delivery.final_status.is_(None)))
        .values(final_status=receipt, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
