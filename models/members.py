"""Members: followers of the official account, and what the webhook records about them."""

from __future__ import annotations

import calendar
import json
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    String,
    bindparam,
    extract,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert, utcnow
from models.events import record_event

# The member event an unfollow comes with (shop systems subscribe to it).
UNSUBSCRIBED_EVENT = "unsubscribed"


# The tier a member starts in, before any order counts.
NEW_MEMBER_TIER = "basic"


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    # A follower has an openid; a shop customer not yet bound to one has only customer_ref.
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    customer_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    birthday: Mapped[date | None] = mapped_column(Date)
    # A birthday the member gave in chat earns the birthday-month bonus from this day (the
    # first of the next month); None: from the start (set by staff or the shop).
    birthday_bonus_from: Mapped[date | None] = mapped_column(Date)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Derived from the ledger and kept in step with it in the same transaction; the row is
    # also the lock that serialises a member's point changes. `ledger verify` checks it.
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    tier: Mapped[str] = mapped_column(String(16), default=NEW_MEMBER_TIER)
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    segment: Mapped[str | None] = mapped_column(String(16))
    segment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the member entered their current segment (the refresh that moved them into it).
    segment_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 退订: marketing pushes are skipped from then on (service notices still go); None: not.
    marketing_opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


async def find_member(session: AsyncSession, openid: str) -> Member | None:
    """The member with this openid, or None for a follower the programme has not seen yet."""
    return await session.scalar(select(Member).where(Member.openid == openid))


async def record_subscribe(session: AsyncSession, openid: str, at: datetime) -> Member:
    """Create the member on a first follow, or reactivate one who had unsubscribed.

    One upsert, so a follow racing another follow or a first message cannot create two rows.
    """
    insert = dialect_insert(session)
    stmt = insert(Member).values(
        openid=openid, subscribed=True, subscribed_at=at, last_interaction_at=at, created_at=at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[Member.openid],
        set_={"subscribed": True, "subscribed_at": at, "unsubscribed_at": None},
    ).returning(Member.id)
    member_id = (await session.execute(stmt)).scalar_one()
    return await session.get_one(Member, member_id, populate_existing=True)


async def ensure_member(session: AsyncSession, openid: str, at: datetime) -> Member:
    """The member for a follower who writes to us; creates the row for one we missed following."""
    member = await find_member(session, openid)
    if member is not None:
        return member
    insert = dialect_insert(session)
    stmt = insert(Member).values(
        openid=openid, subscribed=True, subscribed_at=None, last_interaction_at=at, created_at=at
    )
    await session.execute(stmt.on_conflict_do_nothing(index_elements=[Member.openid]))
    return await session.scalar(select(Member).where(Member.openid == openid))


_MEMBER_IDS = select(Member.__table__.c.openid, Member.__table__.c.id).where(
    Member.__table__.c.openid.in_(bindparam("openids", expanding=True))
)


async def member_ids_for(
    connection: AsyncConnection | AsyncSession, openids: Collection[str]
) -> dict[str, int]:
    """The ids of those of ``openids`` who are members, by openid (one statement)."""
    rows = await connection.execute(_MEMBER_IDS, {"openids": list(openids)})
    return {openid: member_id for openid, member_id in rows}


async def create_members(
    session: AsyncSession, first: Mapping[str, datetime]
) -> dict[str, tuple[int, bool]]:
    """Create the members of first messages (openid → the message's time) in one statement:
    each one's id, and whether this call created it (not when a first message elsewhere did
    meanwhile). A member created so has nothing on record: no points, coupons or orders, the
    tier ``NEW_MEMBER_TIER``; its handler mostly needs no more."""
    if not first:
        return {}
    table = Member.__table__
    # On the table, not the class: the ORM's bulk-insert path cost more than the insert.
    stmt = (
        dialect_insert(session)(table)
        .values(
            [
                {
                    "openid": openid,
                    "subscribed": True,
                    "subscribed_at": None,
                    "last_interaction_at": at,
                    "created_at": at,
                }
                for openid, at in first.items()
            ]
        )
        .on_conflict_do_nothing(index_elements=[table.c.openid])
        .returning(table.c.openid, table.c.id)
    )
    created = {openid: member_id for openid, member_id in await session.execute(stmt)}
    others = await member_ids_for(session, [o for o in first if o not in created])
    return {
        openid: (created[openid], True) if openid in created else (others[openid], False)
        for openid in first
    }


async def record_unsubscribe(session: AsyncSession, openid: str, at: datetime) -> bool:
    """Mark the member unsubscribed, keeping everything else; False if we never knew them."""
    member_id = await session.scalar(
        update(Member)
        .where(Member.openid == openid)
        .values(subscribed=False, unsubscribed_at=at)
        .returning(Member.id)
    )
    if member_id is None:
        return False
    await record_event(session, member_id, UNSUBSCRIBED_EVENT, {}, at)
    return True


async def record_birthday_once(
    session: AsyncSession, member_id: int, day: date, bonus_from: date
) -> bool:
    """Record a birthday the member gave themselves, only if none is on record (one
    conditional UPDATE: two confirmations at once record one); False when one already was."""
    table = Member.__table__
    recorded = await session.scalar(
        update(table)
        .where(table.c.id == member_id, table.c.birthday.is_(None))
        .values(birthday=day, birthday_bonus_from=bonus_from)
        .returning(table.c.id)
    )
    return recorded is not None


async def set_marketing_opt_out(
    session: AsyncSession, member_id: int, opted_out: bool, at: datetime
) -> bool:
    """Opt the member out of marketing pushes (or back in); False when it already was so."""
    table = Member.__table__
    column = table.c.marketing_opted_out_at
    changed = await session.scalar(
        update(table)
        .where(table.c.id == member_id, column.is_(None) if opted_out else column.is_not(None))
        .values(marketing_opted_out_at=at if opted_out else None)
        .returning(table.c.id)
    )
    return changed is not None


# One statement per batch, however large: the batch is one parameter (a JSON array on SQLite,
# two arrays on PostgreSQL) that the database joins to the members. An executemany handled each
# row's parameters in Python, most of the flush's cost on the webhook's core.
_RECORD_SQLITE = text(
    """
    UPDATE members SET last_interaction_at = v.at
    FROM (
        SELECT value ->> 0 AS openid,
               strftime('%Y-%m-%d %H:%M:%S', value ->> 1, 'unixepoch')
               || printf('.%06d', value ->> 2) AS at
        FROM json_each(:batch)
    ) AS v
    WHERE members.openid = v.openid
      AND (members.last_interaction_at IS NULL OR members.last_interaction_at < v.at)
    """
)
_RECORD_POSTGRES = text(
    """
    UPDATE members SET last_interaction_at = v.at
    FROM (
        SELECT openid, to_timestamp(stamp) AS at
        FROM unnest(CAST(:openids AS text[]), CAST(:stamps AS double precision[]))
            AS batch(openid, stamp)
    ) AS v
    WHERE members.openid = v.openid
      AND (members.last_interaction_at IS NULL OR members.last_interaction_at < v.at)
    """
)


async def record_interactions(session: AsyncSession, latest: Mapping[str, float]) -> int:
    """Store each member's latest interaction time (epoch seconds) in one statement; return
    how many members' times moved.

    Only moves times forward, so flushes from several processes can arrive in any order.
    """
    if not latest:
        return 0
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        params = {"openids": list(latest), "stamps": list(latest.values())}
        result = await connection.execute(_RECORD_POSTGRES, params)
    else:
        # SQLAlchemy's own text form of a UTC time, so that times compare as text.
        rows = [
            [openid, *divmod(round(stamp * 1_000_000), 1_000_000)]
            for openid, stamp in latest.items()
        ]
        batch = json.dumps(rows, separators=(",", ":"))
        result = await connection.execute(_RECORD_SQLITE, {"batch": batch})
    return result.rowcount


async def count_members(session: AsyncSession) -> int:
    """How many members the programme has (any subscription state)."""
    return await session.scalar(select(func.count()).select_from(Member)) or 0


async def birthday_members(
    session: AsyncSession, day: date, batch: int = 1000
) -> AsyncIterator[list[int]]:
    """Ids of subscribed followers whose birthday is ``day`` (29 February birthdays fall on
    28 February in other years), streamed in batches."""
    table = Member.__table__
    same_day = (extract("month", table.c.birthday) == day.month) & (
        extract("day", table.c.birthday) == day.day
    )
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        same_day = same_day | (
            (extract("month", table.c.birthday) == 2) & (extract("day", table.c.birthday) == 29)
        )
    query = (
        select(table.c.id)
        .where(same_day, table.c.subscribed.is_(True), table.c.openid.is_not(None))
        .order_by(table.c.id)
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield [member_id for (member_id,) in rows]


async def audience(
    session: AsyncSession, segments: list[str] | None = None, batch: int = 1000
) -> AsyncIterator[list[int]]:
    """Ids of subscribed followers (only those in ``segments``, if given), streamed in
    batches: the audience of a programme-wide push."""
    table = Member.__table__
    query = select(table.c.id).where(table.c.subscribed.is_(True), table.c.openid.is_not(None))
    if segments is not None:
        query = query.where(table.c.segment.in_(segments))
    result = await session.stream(query.order_by(table.c.id).execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield [member_id for (member_id,) in rows]
