"""The annual recap (年度消费回顾): each active member's year in figures, behind a secret link.

A recap is built once per member and year and never changed afterwards: its token is the
link a member was sent, so it must keep working and keep showing what it showed.

Figures, for the local calendar year in the programme's zone:

- ``orders``: orders paid in the year and not fully refunded (as tiers count them);
  ``spend_fen``: their amount net of refunds (whenever the refund came);
- ``points_earned``: points credited in the year (orders, bonuses, positive adjustments), less
  what refunds of the year's orders took back; ``points_used``: points redeemed in the year
  (expiry and staff corrections are neither);
- ``spend_rank`` / ``ranked_members`` / ``spend_top_percent``: the member's place among the
  members who spent in the year (ties share a place); None when they spent nothing;
- ``tier_start`` / ``tier_end`` / ``tier_journey``: from ``tier_changes``;
- ``monthly_spend_fen``: twelve net amounts, January first (the page's chart).

A member with no order in the year and no points earned or used in it gets no recap.

How it is built (``build_recaps``), for a million members:

1. One ``INSERT … SELECT``: the year's activity per member, summed from a UNION ALL of the
   orders and the ledger in one pass, ranked with window functions over everyone, written
   ``ON CONFLICT DO NOTHING``. These rows have no token yet.
2. Then batches of ``batch`` rows without a token: per batch one statement for the monthly
   spend, one for the tier changes, one executemany that sets the rest and the token.

Tokens are made in Python with ``secrets`` (192 random bits): SQL has no portable source of
unguessable bytes (PostgreSQL's ``gen_random_bytes`` needs the pgcrypto extension, and
``random()`` is not a cryptographic generator), so a row gets its token in step 2. A row
without a token is unfinished: no link points to it, the page cannot find it, and the next
run finishes it. Once set, a token is never written again (``WHERE token IS NULL``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.ledger import LedgerEntry
from models.members import Member
from models.orders import Order
from models.tiers import TierChange

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
BATCH = 1000
# 24 random bytes: 32 URL-safe characters, 192 bits; nobody guesses one.
TOKEN_BYTES = 24


class MemberRecap(Base):
    __tablename__ = "member_recaps"
    # (year, member) rather than (member, year): every query here is "this year's recaps, in
    # member order", which this index answers as a range scan.
    __table_args__ = (
        UniqueConstraint("year", "member_id", name="uq_member_recaps_year_member_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    year: Mapped[int] = mapped_column(Integer)
    # NULL while the recap is being built (see the module's docstring).
    token: Mapped[str | None] = mapped_column(String(64), unique=True)
    orders: Mapped[int] = mapped_column(BigInteger)
    spend_fen: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
    points_used: Mapped[int] = mapped_column(BigInteger)
    spend_rank: Mapped[int | None] = mapped_column(BigInteger)
    ranked_members: Mapped[int | None] = mapped_column(BigInteger)
    spend_top_percent: Mapped[int | None] = mapped_column(Integer)
    tier_start: Mapped[str | None] = mapped_column(String(16))
    tier_end: Mapped[str | None] = mapped_column(String(16))
    # [{"from": code, "to": code, "at": ISO 8601 UTC}, …], oldest first.
    tier_journey: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    monthly_spend_fen: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def year_bounds(year: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local calendar year ``year`` in ``zone`` as a half-open UTC-comparable range."""
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def _month_starts(year: int, zone: ZoneInfo) -> list[datetime]:
    """The local starts of February to December: the boundaries between the 12 months."""
    return [datetime(year, month, 1, tzinfo=zone) for month in range(2, 13)]


async def build_recaps(
    session: AsyncSession, year: int, zone: ZoneInfo, now: datetime, *, batch: int = BATCH
) -> int:
    """Build the recap of every member active in ``year`` (local to ``zone``) that does not
    have one yet; returns how many were completed. Commits after the set-based insert and
    after each batch; safe to run again (existing recaps, and their tokens, are kept).
    ValueError if the year is not over at ``now``.
    """
    start, end = year_bounds(year, zone)
    if end > now:
        # A recap is frozen once built: building it before the year is over would freeze
        # part of a year.
        raise ValueError(f"the year {year} is not over yet")
    await session.execute(_insert_figures(session, year, start, end, now))
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # The table just gained a year of rows that autovacuum has not sampled yet; without
        # statistics PostgreSQL plans the batches below as scans of the whole year.
        await session.execute(text("ANALYZE member_recaps"))
    await session.commit()
    completed = 0
    after = 0
    while True:
        pending = (
            await session.execute(
                # With the member's tier now: the fallback for a tier that never changed.
                select(MemberRecap.id, MemberRecap.member_id, Member.tier)
                .join(Member, Member.id == MemberRecap.member_id)
                .where(
                    MemberRecap.year == year,
                    MemberRecap.member_id > after,
                    MemberRecap.token.is_(None),
                )
                .order_by(MemberRecap.member_id)
                .limit(batch)
            )
        ).all()
        if not pending:
            return completed
        completed += await _complete(session, year, zone, pending, after)
        await session.commit()
        after = pending[-1].member_id


def _insert_figures(
    session: AsyncSession, year: int, start: datetime, end: datetime, now: datetime
) -> Any:
    """The one INSERT … SELECT of step 1: every active member's figures and spend rank."""
    net = Order.amount_fen - Order.refunded_fen
    paid_in_year = and_(Order.paid_at >= start, Order.paid_at < end)

    def zero() -> Any:
        return literal(0, BigInteger)

    # One row per order and per relevant ledger entry, summed per member below: a single pass
    # over each table, no join between the aggregates.
    activity = union_all(
        select(
            Order.member_id.label("member_id"),
            literal(1, BigInteger).label("any_order"),
            case((net > 0, 1), else_=0).label("orders"),
            net.label("spend"),
            zero().label("earned"),
            zero().label("used"),
        ).where(paid_in_year),
        select(
            LedgerEntry.member_id,
            zero(),
            zero(),
            zero(),
            # Points a cancelled redemption gave back are not earned: they undo the spending.
            case(
                (and_(LedgerEntry.points > 0, LedgerEntry.kind != "return"), LedgerEntry.points),
                else_=0,
            ),
            case((LedgerEntry.kind.in_(("redeem", "return")), -LedgerEntry.points), else_=0),
        ).where(
            LedgerEntry.created_at >= start,
            LedgerEntry.created_at < end,
            or_(LedgerEntry.points > 0, LedgerEntry.kind == "redeem"),
        ),
        # Points a refund took back count against the year the order was paid in (as its
        # spend does), whenever the refund came.
        select(LedgerEntry.member_id, zero(), zero(), zero(), LedgerEntry.points, zero())
        .join(Order, Order.id == LedgerEntry.order_id)
        .where(LedgerEntry.kind == "refund", paid_in_year),
    ).subquery("activity")

    def total(name: str) -> Any:
        # BIGINT, not NUMERIC (PostgreSQL's sum of bigints): ints stay ints.
        return cast(func.sum(activity.c[name]), BigInteger)

    totals = (
        select(
            activity.c.member_id,
            total("orders").label("orders"),
            total("spend").label("spend"),
            total("earned").label("earned"),
            total("used").label("used"),
        )
        .group_by(activity.c.member_id)
        .having(or_(total("any_order") > 0, total("earned") != 0, total("used") != 0))
        .subquery("totals")
    )
    spent = totals.c.spend > 0
    by_spend = totals.c.spend.desc()
    # Members who spent nothing sort last, so they move no one's place; they get no place.
    # count(*) over the default frame (everyone up to and including one's peers) is
    # cume_dist() × N, kept as integers so "top N%" is exact: no floating-point rounding.
    ranked = select(
        totals,
        case((spent, func.rank().over(order_by=by_spend))).label("spend_rank"),
        case((spent, func.count().over(order_by=by_spend))).label("at_or_above"),
        func.sum(case((spent, 1), else_=0)).over().label("ranked_members"),
    ).subquery("ranked")
    top_percent = case(
        (
            ranked.c.at_or_above.is_not(None),
            # ceil(100 × at_or_above / ranked_members), in integers.
            (100 * ranked.c.at_or_above + ranked.c.ranked_members - 1) // ranked.c.ranked_members,
        )
    )
    recaps = MemberRecap.__table__
    figures = select(
        ranked.c.member_id,
        literal(year, Integer),
        ranked.c.orders,
        ranked.c.spend,
        case((ranked.c.earned < 0, 0), else_=ranked.c.earned),
        ranked.c.used,
        ranked.c.spend_rank,
        case((ranked.c.spend_rank.is_not(None), ranked.c.ranked_members)),
        top_percent,
        literal(now, UTCDateTime),
    ).where(
        # Ranks are taken over everyone above; only members without a recap are written.
        # (SQLite also needs a WHERE here to parse INSERT … SELECT … ON CONFLICT.)
        ~exists().where(recaps.c.year == year, recaps.c.member_id == ranked.c.member_id)
    )
    columns = [
        "member_id",
        "year",
        "orders",
        "spend_fen",
        "points_earned",
        "points_used",
        "spend_rank",
        "ranked_members",
        "spend_top_percent",
        "created_at",
    ]
    insert = dialect_insert(session)
    return (
        insert(recaps)
        .from_select(columns, figures)
        .on_conflict_do_nothing(index_elements=["year", "member_id"])
    )


async def _complete(
    session: AsyncSession, year: int, zone: ZoneInfo, pending: Sequence[Any], after: int
) -> int:
    """Step 2 for one batch: monthly spend, tier changes, then the rest and the token.

    The reads take the batch's member-id range ``(after, last]``, not a list of 1000 ids: an
    index range scan, and a statement of the same shape every batch (PostgreSQL plans a long
    IN list afresh each time). Members in the range without a pending recap are ignored.
    """
    start, end = year_bounds(year, zone)
    ids = (after, pending[-1].member_id)
    monthly = await _monthly_spend(session, ids, year, zone)
    tiers = await _tiers(session, ids, {row.member_id: row.tier for row in pending}, start, end)
    rows = []
    for row in pending:
        tier_start, tier_end, journey = tiers[row.member_id]
        rows.append(
            {
                "b_id": row.id,
                "b_token": secrets.token_urlsafe(TOKEN_BYTES),
                "b_start": tier_start,
                "b_end": tier_end,
                "b_journey": journey,
                "b_monthly": monthly.get(row.member_id, [0] * 12),
            }
        )
    recaps = MemberRecap.__table__
    statement = (
        update(recaps)
        # A concurrent run may have finished the row: its token stands.
        .where(recaps.c.id == bindparam("b_id"), recaps.c.token.is_(None))
        .values(
            token=bindparam("b_token"),
            tier_start=bindparam("b_start"),
            tier_end=bindparam("b_end"),
            tier_journey=bindparam("b_journey", type_=JSON),
            monthly_spend_fen=bindparam("b_monthly", type_=JSON),
        )
    )
    connection = await session.connection()
    await connection.execute(statement, rows)
    return len(rows)


async def _monthly_spend(
    session: AsyncSession, ids: tuple[int, int], year: int, zone: ZoneInfo
) -> dict[int, list[int]]:
    """Net spend per local month of ``year`` of each member with an id in ``(after, last]``,
    in one grouped statement."""
    start, end = year_bounds(year, zone)
    # Month boundaries computed here, in the zone (DST-safe), and compared as timestamps: no
    # time-zone arithmetic in SQL, which SQLite does not have.
    month = case(
        *(
            (Order.paid_at < boundary, index)
            for index, boundary in enumerate(_month_starts(year, zone))
        ),
        else_=11,
    )
    orders = (
        select(
            Order.member_id.label("member_id"),
            month.label("month"),
            (Order.amount_fen - Order.refunded_fen).label("net"),
        )
        .where(
            Order.member_id > ids[0],
            Order.member_id <= ids[1],
            Order.paid_at >= start,
            Order.paid_at < end,
        )
        .subquery("year_orders")
    )
    rows = await session.execute(
        # Grouped on the subquery's column: PostgreSQL will not match a CASE repeated with
        # fresh bound parameters in GROUP BY.
        select(
            orders.c.member_id, orders.c.month, cast(func.sum(orders.c.net), BigInteger)
        ).group_by(orders.c.member_id, orders.c.month)
    )
    spend: dict[int, list[int]] = {}
    for member_id, index, amount in rows:
        spend.setdefault(member_id, [0] * 12)[int(index)] = int(amount)
    return spend


async def _tiers(
    session: AsyncSession,
    ids: tuple[int, int],
    current: dict[int, str],
    start: datetime,
    end: datetime,
) -> dict[int, tuple[str, str, list[dict[str, str]]]]:
    """Per member of ``current`` (id → tier now): the tier at the start and at the end of
    the year, and the year's changes. From ``tier_changes`` (few per member), falling back to
    the tier now for a member whose tier never changed.
    """
    changes: dict[int, list[tuple[str, str, datetime]]] = {}
    rows = await session.execute(
        select(
            TierChange.member_id, TierChange.from_tier, TierChange.to_tier, TierChange.created_at
        )
        .where(TierChange.member_id > ids[0], TierChange.member_id <= ids[1])
        .order_by(TierChange.member_id, TierChange.created_at, TierChange.id)
    )
    for member_id, from_tier, to_tier, at in rows:
        changes.setdefault(member_id, []).append((from_tier, to_tier, at))
    tiers = {}
    for member_id, now_tier in current.items():
        history = changes.get(member_id, [])
        before = [change for change in history if change[2] < start]
        during = [change for change in history if start <= change[2] < end]
        later = [change for change in history if change[2] >= end]
        # The tier held at a moment: set by the last change before it, else what the first
        # change after it changed from, else the tier the member has never left.
        if before:
            tier_start = before[-1][1]
        elif during:
            tier_start = during[0][0]
        else:
            tier_start = later[0][0] if later else now_tier
        tier_end = during[-1][1] if during else tier_start
        journey = [{"from": old, "to": new, "at": at.isoformat()} for old, new, at in during]
        tiers[member_id] = (tier_start, tier_end, journey)
    return tiers


async def recap_by_token(session: AsyncSession, token: str) -> MemberRecap | None:
    """The finished recap behind a link's token, or None (through the token's unique index)."""
    return await session.scalar(select(MemberRecap).where(MemberRecap.token == token))


@dataclass(frozen=True, slots=True)
class RecapLink:
    """A finished recap to send: whose, and the token of its link."""

    member_id: int
    token: str


async def recaps_to_send(
    session: AsyncSession, year: int, batch: int = BATCH
) -> AsyncIterator[list[RecapLink]]:
    """The finished recaps of ``year`` whose members can be reached (subscribed followers),
    streamed in batches in member order."""
    query = (
        select(MemberRecap.member_id, MemberRecap.token)
        .join(Member, Member.id == MemberRecap.member_id)
        .where(
            MemberRecap.year == year,
            MemberRecap.token.is_not(None),
            Member.subscribed.is_(True),
            Member.openid.is_not(None),
        )
        .order_by(MemberRecap.member_id)
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield [RecapLink(member_id, token) for member_id, token in rows]


def recap_url(base_url: str, token: str) -> str:
    """The page of the recap with ``token`` under the service's public address."""
    return f"{base_url.rstrip('/')}/recap/{token}"


async def latest_recap(connection: AsyncConnection, member_id: int) -> tuple[int, str] | None:
    """(year, token) of the member's most recent finished recap, or None."""
    row = (
        await connection.execute(
            select(MemberRecap.year, MemberRecap.token)
            .where(MemberRecap.member_id == member_id, MemberRecap.token.is_not(None))
            .order_by(MemberRecap.year.desc())
            .limit(1)
        )
    ).first()
    return (row.year, row.token) if row is not None else None
