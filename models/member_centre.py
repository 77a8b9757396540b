"""What each page of the member centre shows, one statement (one round trip) per page.

Every function takes the member's id from the signed session, never from a URL or a form,
and returns None when no member with that id and openid is on record (erased, or the session
outlived a merge), so a page shows nothing at all rather than somebody else's data. Each
statement stacks the member's own row and the page's list with UNION ALL (the way
``models.ledger.points_summary`` answers 积分), over the indexes the chat answers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    String,
    bindparam,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from models.base import UTCDateTime
from models.coupons import Coupon
from models.ledger import LedgerEntry, PointLot
from models.members import Member
from models.orders import FUTURE_TOLERANCE, Order
from models.rules import ProgrammeRules
from models.tiers import Stats, window_start

# Lists are shown a page at a time; the soonest expiry dates, the coupons, at most these.
PAGE_SIZE = 20
EXPIRY_GROUPS = 20
USABLE_COUPONS = 100
PAST_COUPONS = 30

Db = AsyncConnection | AsyncSession

_members = Member.__table__.c
_MEMBER = bindparam("member_id", type_=BigInteger)
_OPENID = bindparam("openid", type_=String)
_NOW = bindparam("now", type_=UTCDateTime)

# Every stacked row: a tag, four numbers, three texts, three times (typed NULLs elsewhere, so
# PostgreSQL resolves each column to one type).
_NUMBERS, _TEXTS, _TIMES = 4, 3, 3


def _row(
    part: str,
    numbers: tuple[Any, ...] = (),
    texts: tuple[Any, ...] = (),
    times: tuple[Any, ...] = (),
) -> list[ColumnElement[Any]]:
    columns: list[ColumnElement[Any]] = [literal(part).label("part")]
    for n in range(_NUMBERS):
        value = numbers[n] if n < len(numbers) else null()
        columns.append(cast(value, BigInteger).label(f"n{n}"))
    for n in range(_TEXTS):
        value = texts[n] if n < len(texts) else null()
        columns.append(cast(value, String).label(f"t{n}"))
    for n in range(_TIMES):
        # A real column is only re-typed: SQLite's CAST(… AS DATETIME) would make it a number.
        value = type_coerce(times[n], UTCDateTime) if n < len(times) else cast(null(), UTCDateTime)
        columns.append(value.label(f"a{n}"))
    return columns


def _head(*extra_numbers: Any, texts: tuple[Any, ...] = (), times: tuple[Any, ...] = ()) -> Select:
    """The member's own row: found only with the session's id and openid both matching."""
    return select(*_row("m", extra_numbers, texts, times)).where(
        _members.id == _MEMBER, _members.openid == _OPENID
    )


async def _run(db: Db, statement: CompoundSelect, **params: Any) -> list[Any] | None:
    rows = (await db.execute(statement, params)).all()
    if not any(row.part == "m" for row in rows):
        return None
    return rows


# The card ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardFacts:
    """The card: who, tier, the tier window's purchases, balance, what expires when."""

    name: str | None
    tier: str
    tier_since: datetime | None
    balance: int
    stats: Stats
    expiring: list[tuple[datetime, int]]


def _card_statement() -> CompoundSelect:
    orders = Order.__table__.c
    net = orders.amount_fen - orders.refunded_fen
    window = (
        orders.member_id == _members.id,
        orders.paid_at > bindparam("since", type_=UTCDateTime),
        orders.paid_at <= bindparam("until", type_=UTCDateTime),
        net > 0,
    )
    count = select(func.count()).where(*window).scalar_subquery()
    spend = select(func.coalesce(func.sum(net), 0)).where(*window).scalar_subquery()
    head = _head(
        _members.points_balance,
        count,
        spend,
        texts=(_members.name, _members.tier),
        times=(_members.tier_since,),
    )
    lots = PointLot.__table__.c
    soonest = (
        select(lots.expires_at, func.sum(lots.remaining).label("points"))
        .where(lots.member_id == _MEMBER, lots.remaining > 0, lots.expires_at > _NOW)
        .group_by(lots.expires_at)
        .order_by(lots.expires_at)
        .limit(EXPIRY_GROUPS)
        .subquery()
    )
    expiring = select(*_row("e", (soonest.c.points,), times=(soonest.c.expires_at,)))
    return union_all(head, expiring)


_CARD = _card_statement()


async def card_facts(
    db: Db, rules: ProgrammeRules, member_id: int, openid: str, now: datetime
) -> CardFacts | None:
    """The card's facts in one statement (the tier window counted as ``models.tiers``)."""
    rows = await _run(
        db,
        _CARD,
        member_id=member_id,
        openid=openid,
        now=now,
        since=window_start(rules, now),
        until=now + FUTURE_TOLERANCE,
    )
    if rows is None:
        return None
    head = next(row for row in rows if row.part == "m")
    return CardFacts(
        name=head.t0,
        tier=head.t1,
        tier_since=head.a0,
        balance=int(head.n0),
        stats=Stats(int(head.n1), int(head.n2)),
        expiring=sorted((row.a0, int(row.n0)) for row in rows if row.part == "e"),
    )


# Coupons -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CouponFacts:
    code: str
    kind: str
    status: str  # issued, redeemed, expired, revoked
    valid_from: datetime
    valid_until: datetime
    redeemed_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.status == "issued" and self.valid_from <= now < self.valid_until

    def upcoming(self, now: datetime) -> bool:
        return self.status == "issued" and now < self.valid_from

    def expired(self, now: datetime) -> bool:
        return self.status == "expired" or (self.status == "issued" and self.valid_until <= now)


def _coupon_part(part: str, where: Any, order: Any, limit: int) -> Select:
    c = Coupon.__table__.c
    chosen = (
        select(c.code, c.kind, c.status, c.valid_from, c.valid_until, c.redeemed_at)
        .where(c.member_id == _MEMBER, where)
        .order_by(*order)
        .limit(limit)
        .subquery()
    )
    return select(
        *_row(
            part,
            texts=(chosen.c.code, chosen.c.kind, chosen.c.status),
            times=(chosen.c.valid_from, chosen.c.valid_until, chosen.c.redeemed_at),
        )
    )


def _coupons_statement() -> CompoundSelect:
    c = Coupon.__table__.c
    open_ = (c.status == "issued") & (c.valid_until > _NOW)
    return union_all(
        _head(),
        _coupon_part("u", open_, (c.valid_until, c.id), USABLE_COUPONS),
        _coupon_part("p", ~open_, (c.id.desc(),), PAST_COUPONS),
    )


_COUPONS = _coupons_statement()


async def coupon_facts(
    db: Db, member_id: int, openid: str, now: datetime
) -> list[CouponFacts] | None:
    """The member's coupons still to use (soonest to expire first), then the latest used,
    expired or withdrawn ones."""
    rows = await _run(db, _COUPONS, member_id=member_id, openid=openid, now=now)
    if rows is None:
        return None
    return [
        CouponFacts(row.t0, row.t1, row.t2, row.a0, row.a1, row.a2)
        for part in ("u", "p")
        for row in rows
        if row.part == part
    ]


def _one_coupon_statement() -> CompoundSelect:
    c = Coupon.__table__.c
    return union_all(
        _head(),
        _coupon_part("u", c.code == bindparam("code", type_=String), (c.id,), 1),
    )


_ONE_COUPON = _one_coupon_statement()


async def one_coupon(
    db: Db, member_id: int, openid: str, code: str
) -> tuple[bool, CouponFacts | None]:
    """(member found, the member's coupon with this code or None: another member's coupon is
    not found either)."""
    rows = await _run(db, _ONE_COUPON, member_id=member_id, openid=openid, code=code)
    if rows is None:
        return False, None
    found = [CouponFacts(r.t0, r.t1, r.t2, r.a0, r.a1, r.a2) for r in rows if r.part == "u"]
    return True, (found[0] if found else None)


# Points history and orders -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryFacts:
    id: int
    points: int
    balance_after: int
    kind: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryFacts:
    balance: int
    entries: list[EntryFacts]
    older: int | None  # the cursor for the next page


def _history_statement() -> CompoundSelect:
    e = LedgerEntry.__table__.c
    before = bindparam("before", type_=BigInteger)
    latest = (
        select(e.id, e.points, e.balance_after, e.kind, e.reason, e.created_at)
        .where(e.member_id == _MEMBER, or_(before.is_(None), e.id < before))
        .order_by(e.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .subquery()
    )
    entries = select(
        *_row(
            "l",
            (latest.c.id, latest.c.points, latest.c.balance_after),
            (latest.c.kind, latest.c.reason),
            (latest.c.created_at,),
        )
    )
    return union_all(_head(_members.points_balance), entries)


_HISTORY = _history_statement()


async def history_facts(
    db: Db, member_id: int, openid: str, before: int | None, size: int = PAGE_SIZE
) -> HistoryFacts | None:
    """The balance and one page of the ledger, newest first, older than entry ``before``."""
    rows = await _run(
        db, _HISTORY, member_id=member_id, openid=openid, before=before, limit=size + 1
    )
    if rows is None:
        return None
    head = next(row for row in rows if row.part == "m")
    entries = sorted(
        (
            EntryFacts(int(r.n0), int(r.n1), int(r.n2), r.t0, r.t1, r.a0)
            for r in rows
            if r.part == "l"
        ),
        key=lambda entry: -entry.id,
    )
    more = len(entries) > size
    entries = entries[:size]
    return HistoryFacts(int(head.n0), entries, entries[-1].id if more else None)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    id: int
    shop_order_id: str
    amount_fen: int
    refunded_fen: int
    points_earned: int
    channel: str
    paid_at: datetime


@dataclass(frozen=True, slots=True)
class OrdersFacts:
    orders: list[OrderFacts]
    older: int | None


def _orders_statement() -> CompoundSelect:
    o = Order.__table__.c
    before = bindparam("before", type_=BigInteger)
    latest = (
        select(o.id, o.amount_fen, o.refunded_fen, o.points_earned, o.shop_order_id, o.channel)
        .add_columns(o.paid_at)
        .where(o.member_id == _MEMBER, or_(before.is_(None), o.id < before))
        .order_by(o.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .subquery()
    )
    rows = select(
        *_row(
            "o",
            (latest.c.id, latest.c.amount_fen, latest.c.refunded_fen, latest.c.points_earned),
            (latest.c.shop_order_id, latest.c.channel),
            (latest.c.paid_at,),
        )
    )
    return union_all(_head(), rows)


_ORDERS = _orders_statement()


async def orders_facts(
    db: Db, member_id: int, openid: str, before: int | None, size: int = PAGE_SIZE
) -> OrdersFacts | None:
    """One page of the member's orders, newest recorded first, older than order ``before``."""
    rows = await _run(
        db, _ORDERS, member_id=member_id, openid=openid, before=before, limit=size + 1
    )
    if rows is None:
        return None
    orders = sorted(
        (
            OrderFacts(int(r.n0), r.t0, int(r.n1), int(r.n2), int(r.n3), r.t1, r.a0)
            for r in rows
            if r.part == "o"
        ),
        key=lambda order: -order.id,
    )
    more = len(orders) > size
    orders = orders[:size]
    return OrdersFacts(orders, orders[-1].id if more else None)


# Profile -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileFacts:
    name: str | None
    phone: str | None
    birthday: date | None
    opted_out: bool


_PROFILE = select(
    _members.name, _members.phone, _members.birthday, _members.marketing_opted_out_at
).where(_members.id == _MEMBER, _members.openid == _OPENID)


async def profile_facts(db: Db, member_id: int, openid: str) -> ProfileFacts | None:
    """The member's profile and their marketing choice."""
    row = (await db.execute(_PROFILE, {"member_id": member_id, "openid": openid})).one_or_none()
    if row is None:
        return None
    return ProfileFacts(row.name, row.phone, row.birthday, row.marketing_opted_out_at is not None)


async def member_by_openid(db: Db, openid: str) -> int | None:
    """The member id behind an openid WeChat's authorisation gave (None: not a member)."""
    return (
        await db.execute(select(_members.id).where(_members.openid == openid))
    ).scalar_one_or_none()


_STILL = select(_members.id).where(_members.id == _MEMBER, _members.openid == _OPENID)


async def still_member(db: Db, member_id: int, openid: str) -> bool:
    """Whether the session's member is still on record with that openid (the member code's
    page needs nothing else from the database)."""
    found = await db.execute(_STILL, {"member_id": member_id, "openid": openid})
    return found.scalar_one_or_none() is not None
