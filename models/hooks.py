"""Events for shop systems: who subscribes to what, and each event's delivery to each of them.

A member event (models/events.py) is fanned out once: one ``hook_deliveries`` row per active
subscriber of its type, written with the exact body that will be signed and sent, and a
unique idempotency key (``evt_<event>.<subscriber>``) that stays the same through retries and
replays, so a receiver that keeps the keys it has seen acts on an event once. The row is the
subscriber's log: status, attempts, the last HTTP status or error, and when it was delivered.

Status: ``queued`` (perhaps until ``not_before``), ``sending`` (a worker is posting it), then
``delivered`` or, once ``retry_until`` has passed, ``failed``. A replay puts a row back in
``queued`` with a fresh day of retries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.events import MemberEvent
from models.members import Member

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")

EventType = Literal[
    "points.changed", "tier.changed", "referral.rewarded", "rating.low", "member.unsubscribed"
]
TYPES: tuple[str, ...] = get_args(EventType)
# Member event kind → the event type subscribers see.
EVENT_TYPES: dict[str, EventType] = {
    "points_changed": "points.changed",
    "tier_upgraded": "tier.changed",
    "tier_downgraded": "tier.changed",
    "referral_rewarded": "referral.rewarded",
    "low_rating": "rating.low",
    "unsubscribed": "member.unsubscribed",
}


class HookSubscriber(Base):
    __tablename__ = "hook_subscribers"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    # The HMAC key, shared with the subscriber once at creation; it signs, so it is kept.
    secret: Mapped[str] = mapped_column(String(64))
    types: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HookDelivery(Base):
    __tablename__ = "hook_deliveries"
    __table_args__ = (
        Index("ix_hook_deliveries_subscriber", "subscriber_id", "id"),
        # The foreign key from deleted events, and the nightly prune (models/hooks.prune).
        Index("ix_hook_deliveries_event_id", "event_id"),
        Index("ix_hook_deliveries_created_at", "created_at"),
        Index(
            "ix_hook_deliveries_waiting",
            "not_before",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("hook_subscribers.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("member_events.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


async def add_subscriber(
    session: AsyncSession, name: str, url: str, types: Sequence[str], secret: str, now: datetime
) -> HookSubscriber:
    """A new active subscriber (the caller checks the name is free and the types known)."""
    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)}")
    subscriber = HookSubscriber(
        name=name, url=url, secret=secret, types=sorted(set(types)), active=True, created_at=now
    )
    session.add(subscriber)
    await session.flush()
    return subscriber


def _body(event: MemberEvent, type_: str, openid: str | None, customer: str | None) -> str:
    return json.dumps(
        {
            "id": f"evt_{event.id}",
            "type": type_,
            "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
            "member": {"openid": openid, "customer_ref": customer},
            "data": event.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )


async def fan_out(
    session: AsyncSession, now: datetime, retry_for: timedelta, limit: int = 1000
) -> tuple[int, list[int]]:
    """Turn up to ``limit`` events not yet fanned out into deliveries for the subscribers of
    their types, and mark them fanned out; (events taken, new delivery ids). Locked on
    PostgreSQL (skipping rows another process holds), so two workers never take one event;
    the idempotency key makes a second fan-out of an event plan nothing."""
    query = (
        select(MemberEvent, Member.openid, Member.customer_ref)
        .join(Member, Member.id == MemberEvent.member_id)
        .where(MemberEvent.hooked_at.is_(None))
        .order_by(MemberEvent.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(of=MemberEvent, skip_locked=True)
    events = (await session.execute(query)).all()
    if not events:
        return 0, []
    subscribers = (
        await session.scalars(select(HookSubscriber).where(HookSubscriber.active.is_(True)))
    ).all()
    rows = [
        {
            "subscriber_id": subscriber.id,
            "event_id": event.id,
            "member_id": event.member_id,
            "type": type_,
            "idempotency_key": f"evt_{event.id}.{subscriber.id}",
            "body": _body(event, type_, openid, customer),
            "status": "queued",
            "attempts": 0,
            "not_before": now,
            "retry_until": now + retry_for,
            "created_at": now,
            "updated_at": now,
        }
        for event, openid, customer in events
        if (type_ := EVENT_TYPES.get(event.kind)) is not None
        for subscriber in subscribers
        if type_ in subscriber.types
    ]
    ids: list[int] = []
    if rows:
        insert = dialect_insert(session)(HookDelivery).on_conflict_do_nothing(
            index_elements=[HookDelivery.idempotency_key]
        )
        ids = list((await session.scalars(insert.returning(HookDelivery.id), rows)).all())
    await session.execute(
        update(MemberEvent)
        .where(MemberEvent.id.in_([event.id for event, _, _ in events]))
        .values(hooked_at=now)
    )
    return len(events), ids


@dataclass(frozen=True, slots=True)
class ClaimedHook:
    """A delivery a worker has claimed: where it goes, signed with what, and its body."""

    id: int
    url: str
    secret: str
    type: str
    idempotency_key: str
    body: str
    attempts: int
    retry_until: datetime


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """One attempt's result: ``delivered``, ``retry`` (at ``not_before``) or ``failed``."""

    delivery_id: int
    status: str
    response_status: int | None = None
    error: str | None = None
    not_before: datetime | None = None


async def claim(session: AsyncSession, ids: Sequence[int], now: datetime) -> list[ClaimedHook]:
    """Take these rows if queued and due (``queued`` → ``sending``, one more attempt), with
    their subscribers' URL and secret; rows another worker took are left out."""
    if not ids:
        return []
    claimed = (
        await session.execute(
            update(HookDelivery)
            .where(
                HookDelivery.id.in_(list(ids)),
                HookDelivery.status == "queued",
                HookDelivery.not_before <= now,
            )
            .values(status="sending", attempts=HookDelivery.attempts + 1, updated_at=now)
            .returning(HookDelivery.id)
            .execution_options(synchronize_session=False)
        )
    ).scalars()
    taken = list(claimed)
    if not taken:
        return []
    rows = await session.execute(
        select(HookDelivery, HookSubscriber.url, HookSubscriber.secret)
        .join(HookSubscriber, HookSubscriber.id == HookDelivery.subscriber_id)
        .where(HookDelivery.id.in_(taken))
    )
    return [
        ClaimedHook(d.id, url, secret, d.type, d.idempotency_key, d.body, d.attempts, d.retry_until)
        for d, url, secret in rows
    ]


async def record(session: AsyncSession, outcomes: Sequence[HookOutcome], now: datetime) -> None:
    """Write these attempts' results in one executemany."""
    if not outcomes:
        return
    table = HookDelivery.__table__
    await (await session.connection()).execute(
        update(table)
        .where(table.c.id == bindparam("d"), table.c.status == "sending")
        .values(
            status=bindparam("s"),
            response_status=bindparam("r"),
            error=bindparam("e"),
            not_before=bindparam("n"),
            updated_at=now,
            delivered_at=bindparam("at"),
        ),
        [
            {
                "d": o.delivery_id,
                "s": "queued" if o.status == "retry" else o.status,
                "r": o.response_status,
                "e": o.error[:200] if o.error else None,
                "n": o.not_before or now,
                "at": now if o.status == "delivered" else None,
            }
            for o in outcomes
        ],
    )


async def requeue_interrupted(session: AsyncSession, ids: Sequence[int], now: datetime) -> int:
    """Put rows a dead worker left ``sending`` back in the queue: unlike WeChat, a receiver
    dedupes by idempotency key, so sending again is safe. How many were put back."""
    if not ids:
        return 0
    result = await session.execute(
        update(HookDelivery)
        .where(HookDelivery.id.in_(list(ids)), HookDelivery.status == "sending")
        .values(status="queued", not_before=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def stuck(
    session: AsyncSession, before: datetime, now: datetime, limit: int = 1000
) -> list[int]:
    """Rows that should have gone by ``before`` but are still waiting or left ``sending``
    (a lost stream entry, a dead worker): set back to queued, their ids to enqueue again."""
    ids = list(
        (
            await session.scalars(
                select(HookDelivery.id)
                .where(
                    ((HookDelivery.status == "queued") & (HookDelivery.not_before <= before))
                    | ((HookDelivery.status == "sending") & (HookDelivery.updated_at <= before))
                )
                .order_by(HookDelivery.id)
                .limit(limit)
            )
        ).all()
    )
    await requeue_interrupted(session, ids, now)
    return ids


async def replay(
    session: AsyncSession, delivery_id: int, now: datetime, retry_for: timedelta
) -> bool:
    """Send a delivery again (same body and idempotency key) with a fresh day of retries;
    False when there is no such row or it is on its way already."""
    result = await session.execute(
        update(HookDelivery)
        .where(
            HookDelivery.id == delivery_id,
            HookDelivery.status.in_(["delivered", "failed"]),
        )
        .values(
            status="queued",
            attempts=0,
            not_before=now,
            retry_until=now + retry_for,
            response_status=None,
            error=None,
            delivered_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def delivery_log(
    session: AsyncSession,
    subscriber_id: int,
    *,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[HookDelivery]:
    """A subscriber's deliveries, newest first (``before``: a delivery id, for the next page)."""
    query = select(HookDelivery).where(HookDelivery.subscriber_id == subscriber_id)
    if status is not None:
        query = query.where(HookDelivery.status == status)
    if before is not None:
        query = query.where(HookDelivery.id < before)
    return list((await session.scalars(query.order_by(HookDelivery.id.desc()).limit(limit))).all())


async def delivery_counts(session: AsyncSession) -> dict[tuple[int, str], int]:
    """(subscriber, status) → deliveries, for the console's overview."""
    rows = await session.execute(
        select(HookDelivery.subscriber_id, HookDelivery.status, func.count()).group_by(
            HookDelivery.subscriber_id, HookDelivery.status
        )
    )
    return {(subscriber, status): count for subscriber, status, count in rows}


# How long events and shop-event deliveries are kept once acted on (the log and its replays).
KEPT = timedelta(days=30)


async def prune(session: AsyncSession, before: datetime, batch: int = 10_000) -> tuple[int, int]:
    """Delete shop-event deliveries finished before ``before``, then member events from
    before it that were planned and fanned out and no delivery still names, ``batch`` rows a
    statement (each committed), so the tables keep a month, not the programme's history;
    (deliveries, events) deleted."""
    finished = select(HookDelivery.id).where(
        HookDelivery.created_at < before, HookDelivery.status.in_(["delivered", "failed"])
    )
    acted_on = select(MemberEvent.id).where(
        MemberEvent.created_at < before,
        MemberEvent.processed_at.is_not(None),
        MemberEvent.hooked_at.is_not(None),
        ~exists().where(HookDelivery.event_id == MemberEvent.id),
    )
    counts = []
    for model, query in ((HookDelivery, finished), (MemberEvent, acted_on)):
        total = 0
        while True:
            ids = list((await session.scalars(query.limit(batch))).all())
            if not ids:
                break
            await session.execute(delete(model).where(model.id.in_(ids)))
            await session.commit()
            total += len(ids)
        counts.append(total)
    return counts[0], counts[1]
