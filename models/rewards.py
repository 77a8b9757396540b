"""The points catalogue (积分兑换): items a marketer manages, what a member can redeem now, and
the fulfilment of a redemption (a pickup code the shop closes).

An item is a coupon kind from the programme's config, a gift (collected in a shop or shipped),
a service (free delivery, a fitting) or an experience (an event place). It has a points price
and an optional cash part (积分+现金, paid to the shop when the item is collected), a stock or
none (unlimited), a validity window, a per-member limit per local month, year or ever, the
tiers it is open to, and an optional early-access window: before ``opens_at`` only
``early_tiers`` may redeem it (新品优先购).

The redemption itself is models/redemption.py; a cancellation (the shop's, here) locks the
same rows in the same order and gives the points back with ``restore``: a ``return`` entry
whose lots keep their original expiry.

Everything here returns facts (dataclasses and refusal codes); messages/ words them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.coupons import (
    Coupon,
)
from models.ledger import KeyConflict, lock_members, restore
from models.members import Member
from models.rules import ProgrammeRules

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
PICKUP_CODE_LENGTH = 10
KINDS = ("coupon", "gift", "service", "experience")
RewardKind = Literal["coupon", "gift", "service", "experience"]
Delivery = Literal["pickup", "ship"]
Period = Literal["month", "year", "ever"]
# pending: waiting for the shop; issued: a coupon, done at once; the rest close a pending one.
FULFILMENT_STATUSES = ("pending", "picked_up", "shipped", "cancelled")
RefusalReason = Literal[
    "unknown",
    "retired",
    "not_open_yet",
    "ended",
    "not_in_tier",
    "sold_out",
    "limit_reached",
    "price_changed",
    "not_enough_points",
]


class RewardItem(Base):
    __tablename__ = "reward_items"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(12))
    coupon_kind: Mapped[str | None] = mapped_column(String(32))
    delivery: Mapped[str | None] = mapped_column(String(8))
    points_price: Mapped[int] = mapped_column(BigInteger)
    cash_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # None: unlimited; otherwise what is left, decremented under the row's lock.
    stock: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    limit_count: Mapped[int | None] = mapped_column(Integer)
    limit_period: Mapped[str] = mapped_column(String(8), default="ever")
    # Tier codes; empty: every tier.
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    early_tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    image_url: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(8), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The shop system's Idempotency-Key of the request that created the item, and the hash of
    # what that request asked for (``add_item``: a retry gets this item, not a second one).
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True, index=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))


class Redemption(Base):
    """A redemption and, for anything but a coupon, its fulfilment record."""

    __tablename__ = "reward_redemptions"
    __table_args__ = (
        Index("ix_reward_redemptions_member_item", "member_id", "item_id"),
        Index("ix_reward_redemptions_item_status", "item_id", "status"),
        Index("ix_reward_redemptions_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("reward_items.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    points: Mapped[int] = mapped_column(BigInteger)
    cash_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(12))
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    pickup_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    # The debit's draw, [[lot id, points], …]: a cancellation restores each with its expiry.
    drawn: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))


class RewardSpec(BaseModel):
    """A catalogue item as a marketer gives it (the console's form and the API's body)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=40)
    description: str = Field(default="", max_length=200)
    kind: RewardKind
    coupon_kind: str | None = Field(default=None, description="kind=coupon: a configured kind")
    delivery: Delivery | None = Field(default=None, description="kind=gift: pickup or ship")
    points_price: int = Field(gt=0, le=100_000_000)
    cash_fen: int = Field(default=0, ge=0, le=100_000_000, description="paid when collected")
    stock: int | None = Field(default=None, ge=0, le=100_000_000, description="null: unlimited")
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    limit_count: int | None = Field(default=None, ge=1, le=1000, description="null: no limit")
    limit_period: Period = "ever"
    tiers: list[str] = Field(default=[], max_length=20, description="empty: every tier")
    early_tiers: list[str] = Field(default=[], max_length=20)
    opens_at: datetime | None = Field(default=None, description="open to all tiers from then")
    image_url: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$")

    @model_validator(mode="after")
    def _consistent(self) -> RewardSpec:
        if self.kind == "coupon":
            if not self.coupon_kind:
                raise ValueError("coupon_kind: a coupon item names a configured coupon kind")
            if self.cash_fen:
                raise ValueError("cash_fen: a coupon item has no cash part")
        elif self.coupon_kind:
            raise ValueError("coupon_kind: only for kind=coupon")
        if self.kind == "gift" and self.delivery is None:
            raise ValueError("delivery: a gift is picked up (pickup) or shipped (ship)")
        if self.kind != "gift" and self.delivery is not None:
            raise ValueError("delivery: only for kind=gift")
        for name in ("valid_from", "valid_until", "opens_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: give a time zone")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until: must be after valid_from")
        if bool(self.early_tiers) != (self.opens_at is not None):
            raise ValueError("early_tiers: give both early_tiers and opens_at, or neither")
        return self

    def check(self, rules: ProgrammeRules) -> None:
        """ValueError naming the field when the item refers to what the programme lacks."""
        if self.coupon_kind and rules.coupon_kind(self.coupon_kind) is None:
            raise ValueError(f"coupon_kind: no coupon kind {self.coupon_kind!r} is configured")
        codes = {tier.code for tier in rules.tiers}
        for name in ("tiers", "early_tiers"):
            unknown = [code for code in getattr(self, name) if code not in codes]
            if unknown:
                raise ValueError(f"{name}: unknown tier {unknown[0]!r}")


@dataclass(frozen=True, slots=True)
class Reward:
    """A catalogue item, as facts."""

    id: int
    name: str
    description: str
    kind: str
    coupon_kind: str | None
    delivery: str | None
    points_price: int
    cash_fen: int
    stock: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    limit_count: int | None
    limit_period: str
    tiers: tuple[str, ...]
    early_tiers: tuple[str, ...]
    opens_at: datetime | None
    image_url: str
    status: str

    @classmethod
    def of(cls, item: RewardItem) -> Reward:
        return cls(
            item.id,
            item.name,
            item.description,
            item.kind,
            item.coupon_kind,
            item.delivery,
            item.points_price,
            item.cash_fen,
            item.stock,
            item.valid_from,
            item.valid_until,
            item.limit_count,
            item.limit_period,
            tuple(item.tiers or ()),
            tuple(item.early_tiers or ()),
            item.opens_at,
            item.image_url,
            item.status,
        )


REWARD_FIELDS = tuple(field.name for field in fields(Reward))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a member cannot redeem an item now; nothing was written (an expiry of due points
    the redemption started is rolled back with it)."""

    reason: RefusalReason
    shortfall: int = 0
    opens_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What a redemption did; ``replayed`` when its key had redeemed before."""

    redemption_id: int
    reward: Reward
    points: int
    cash_fen: int
    balance_after: int
    status: str
    coupon_code: str | None
    coupon_valid_until: datetime | None
    pickup_code: str | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """An item open to the member now; ``shortfall``: the points they lack (0: affordable)."""

    reward: Reward
    shortfall: int


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What a member can redeem now: their balance and tier, and the open items, cheapest
    first, each with what the member is short of."""

    balance: int
    tier: str
    offers: tuple[Offer, ...]

    @property
    def affordable(self) -> tuple[Offer, ...]:
        return tuple(offer for offer in self.offers if offer.shortfall == 0)


def new_item(spec: RewardSpec, now: datetime) -> RewardItem:
    """A new active catalogue item (the caller adds it to the session)."""
    return RewardItem(**spec.model_dump(), status="active", created_at=now, updated_at=now)


@dataclass(frozen=True, slots=True)
class Added:
    """The item a request made, and whether this call made it (False: a retry's replay)."""

    item: RewardItem
    created: bool


async def add_item(
    session: AsyncSession, spec: RewardSpec, now: datetime, key: str | None = None
) -> Added:
    """Add an active item in the caller's transaction. With ``key`` (the request's
    Idempotency-Key) the same key again gets the item it made, whatever was changed on it
    since, and writes nothing; the key with another spec is a KeyConflict. Two requests with
    one key at once make one item: the loser's insert meets the unique key and reads the
    winner's (on SQLite one writer at a time has the database)."""
    item = new_item(spec, now)
    if key is None:
        session.add(item)
        await session.flush()
        return Added(item, created=True)
    fingerprint = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    if (earlier := await _item_by_key(session, key)) is not None:
        return _replayed(earlier, key, fingerprint)
    item.idempotency_key, item.request_fingerprint = key, fingerprint
    try:
        async with session.begin_nested():
            session.add(item)
            await session.flush()
    except IntegrityError:
        if (earlier := await _item_by_key(session, key)) is None:
            raise
        return _replayed(earlier, key, fingerprint)
    return Added(item, created=True)


async def _item_by_key(session: AsyncSession, key: str) -> RewardItem | None:
    return await session.scalar(select(RewardItem).where(RewardItem.idempotency_key == key))


def _replayed(earlier: RewardItem, key: str, fingerprint: str) -> Added:
    if earlier.request_fingerprint != fingerprint:
        raise KeyConflict(f"idempotency key {key!r} added a different item")
    return Added(earlier, created=False)


def apply_spec(item: RewardItem, spec: RewardSpec, now: datetime) -> None:
    """Change an item to ``spec`` (its stock included: the marketer sets what is left)."""
    for name, value in spec.model_dump().items():
        setattr(item, name, value)
    item.updated_at = now


def spec_of(item: RewardItem) -> RewardSpec:
    """The item as a spec (to edit it, or merge a partial change into it)."""
    return RewardSpec.model_validate(
        {name: getattr(item, name) for name in RewardSpec.model_fields}
    )


def period_start(period: str, now: datetime, rules: ProgrammeRules) -> datetime | None:
    """Where a per-member limit's current period began (local month or year), None: ever."""
    local = now.astimezone(rules.zone)
    if period == "month":
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "year":
        return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def closed_to(item: RewardItem | Reward, tier: str, now: datetime, used: int) -> Refusal | None:
    """Why the item is not open to a member of ``tier`` who redeemed it ``used`` times this
    period (balance aside), or None."""
    if item.status != "active":
        return Refusal("retired")
    if item.valid_until is not None and item.valid_until <= now:
        return Refusal("ended")
    if item.valid_from is not None and item.valid_from > now:
        return Refusal("not_open_yet", opens_at=item.valid_from)
    if item.tiers and tier not in item.tiers:
        return Refusal("not_in_tier")
    if item.opens_at is not None and now < item.opens_at and tier not in item.early_tiers:
        return Refusal("not_open_yet", opens_at=item.opens_at)
    if item.stock is not None and item.stock <= 0:
        return Refusal("sold_out")
    if item.limit_count is not None and used >= item.limit_count:
        return Refusal("limit_reached")
    return None


def _offers_statement(one_item: bool) -> Select:
    """The member's balance and tier, and beside them either every active item or the one
    asked for, each with the member's redemptions in its current limit period: one statement
    (one round trip), a single row with no item when there is nothing to list. The member's
    row is found by id, and also by openid when given (the member centre's sessions)."""
    m = Member.__table__.c
    i = RewardItem.__table__.c
    r = Redemption.__table__.c
    since = case(
        (i.limit_period == "month", bindparam("month_start", type_=UTCDateTime)),
        (i.limit_period == "year", bindparam("year_start", type_=UTCDateTime)),
        else_=None,
    )
    used = (
        select(func.count())
        .where(
            r.member_id == m.id,
            r.item_id == i.id,
            r.status != "cancelled",
            or_(since.is_(None), r.created_at >= since),
        )
        .scalar_subquery()
    )
    joined = (
        (i.id == bindparam("item_id", type_=BigInteger)) if one_item else (i.status == "active")
    )
    openid = bindparam("openid", type_=String)
    return (
        select(
            m.points_balance,
            m.tier,
            *(i[name] for name in REWARD_FIELDS),
            case((i.limit_count.is_(None), 0), else_=used).label("used"),
        )
        .select_from(Member.__table__.outerjoin(RewardItem.__table__, joined))
        .where(m.id == bindparam("member_id", type_=BigInteger))
        .where(or_(openid.is_(None), m.openid == openid))
    )


def reward_of(row: Any) -> Reward:
    """The item as a member sees it, from a row carrying ``REWARD_FIELDS``."""
    values = {name: getattr(row, name) for name in REWARD_FIELDS}
    # A Reward holds tuples (it is frozen); the JSON columns come back as lists or null.
    values["tiers"] = tuple(values["tiers"] or ())
    values["early_tiers"] = tuple(values["early_tiers"] or ())
    return Reward(**values)


_OFFERS = _offers_statement(one_item=False).order_by(
    RewardItem.__table__.c.points_price, RewardItem.__table__.c.id
)
# One item's offer: what ``choice`` answers and what a redemption reads under its locks.
ONE_OFFER = _offers_statement(one_item=True)


async def _member_items(
    db: AsyncSession | AsyncConnection,
    statement: Select,
    rules: ProgrammeRules,
    member_id: int,
    now: datetime,
    openid: str | None,
    item_id: int | None = None,
) -> tuple[int, str, list[tuple[Reward, int]]]:
    """(balance, tier, [(item, times used this period)]); NoResultFound: no such member."""
    params = {
        "member_id": member_id,
        "openid": openid,
        "item_id": item_id,
        "month_start": period_start("month", now, rules),
        "year_start": period_start("year", now, rules),
    }
    rows = (await db.execute(statement, params)).all()
    if not rows:
        raise NoResultFound(f"no member {member_id} (with that openid)")
    items = [(reward_of(row), int(row.used)) for row in rows if row.id is not None]
    return int(rows[0].points_balance), rows[0].tier, items


async def catalogue(
    db: AsyncSession | AsyncConnection,
    rules: ProgrammeRules,
    member_id: int,
    now: datetime,
    *,
    openid: str | None = None,
) -> Catalogue:
    """What the member can redeem now: every active item open to their tier, in its window,
    in stock and under their limit, cheapest first, with the points they are short of. One
    statement (chat and the member centre both ask it). ``openid``: the member must still
    have it (NoResultFound otherwise, as for an unknown member)."""
    balance, tier, items = await _member_items(db, _OFFERS, rules, member_id, now, openid)
    offers = tuple(
        Offer(item, max(item.points_price - balance, 0))
        for item, used in items
        if closed_to(item, tier, now, used) is None
    )
    return Catalogue(balance, tier, offers)


@dataclass(frozen=True, slots=True)
class Choice:
    """One item as the member would redeem it now: the item (None: no such item), their
    balance, and why they cannot (None: they can)."""

    reward: Reward | None
    balance: int
    refusal: Refusal | None


async def choice(
    db: AsyncSession | AsyncConnection,
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    now: datetime,
    *,
    openid: str | None = None,
) -> Choice:
    """The item and whether the member can redeem it now (balance included): the same checks
    as ``redeem``, without locks, in one statement (to answer before asking for
    confirmation). NoResultFound: no such member (with that openid)."""
    balance, tier, items = await _member_items(
        db, ONE_OFFER, rules, member_id, now, openid, item_id
    )
    if not items:
        return Choice(None, balance, Refusal("unknown"))
    item, used = items[0]
    refusal = closed_to(item, tier, now, used)
    if refusal is None and balance < item.points_price:
        refusal = Refusal("not_enough_points", shortfall=item.points_price - balance)
    return Choice(item, balance, refusal)


async def why_not(
    db: AsyncSession | AsyncConnection,
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    now: datetime,
) -> Refusal | None:
    """Why the member cannot redeem the item now (balance included), or None."""
    return (await choice(db, rules, member_id, item_id, now)).refusal


async def write_first(session: AsyncSession, table: Any, row_id: int) -> None:
    """SQLite: make the transaction a writer before it reads (a no-op UPDATE of the row), so
    two redemptions queue for the database's one write lock and the second reads what the
    first committed; a reader upgraded later would fail on a stale snapshot instead. The
    transaction must not have read before. PostgreSQL locks rows instead."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await session.execute(
            update(table)
            .where(table.id == row_id)
            .values(id=table.id)
            .execution_options(synchronize_session=False)
        )


async def lock_item(session: AsyncSession, item_id: int) -> RewardItem | None:
    """The item's row, locked and read fresh (after the member's lock: the ledger's order)."""
    return await session.scalar(
        select(RewardItem)
        .where(RewardItem.id == item_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _member_redemption_statement() -> Select:
    m = Member.__table__.c
    r = Redemption.__table__.c
    i = RewardItem.__table__.c
    c = Coupon.__table__.c
    openid = bindparam("openid", type_=String)
    joined = (
        Member.__table__.outerjoin(
            Redemption.__table__,
            (r.member_id == m.id) & (r.id == bindparam("redemption_id", type_=BigInteger)),
        )
        .outerjoin(RewardItem.__table__, i.id == r.item_id)
        .outerjoin(Coupon.__table__, c.id == r.coupon_id)
    )
    return (
        select(
            m.points_balance,
            r.id.label("redemption_id"),
            r.points.label("spent"),
            r.cash_fen.label("cash_due"),
            r.status.label("redemption_status"),
            r.pickup_code,
            c.code.label("coupon_code"),
            c.valid_until.label("coupon_valid_until"),
            *(i[name] for name in REWARD_FIELDS),
        )
        .select_from(joined)
        .where(m.id == bindparam("member_id", type_=BigInteger))
        .where(or_(openid.is_(None), m.openid == openid))
    )


_MEMBER_REDEMPTION = _member_redemption_statement()


async def member_redemption(
    db: AsyncSession | AsyncConnection,
    member_id: int,
    redemption_id: int,
    *,
    openid: str | None = None,
) -> Redeemed | None:
    """One of the member's redemptions as it stands now (its status, the member's balance
    now), in one statement; None when no redemption of theirs has that id, whoever's it is.
    NoResultFound: no such member (with that openid)."""
    params = {"member_id": member_id, "openid": openid, "redemption_id": redemption_id}
    row = (await db.execute(_MEMBER_REDEMPTION, params)).one_or_none()
    if row is None:
        raise NoResultFound(f"no member {member_id} (with that openid)")
    if row.redemption_id is None:
        return None
    return Redeemed(
        row.redemption_id,
        reward_of(row),
        row.spent,
        row.cash_due,
        row.points_balance,
        row.redemption_status,
        row.coupon_code,
        row.coupon_valid_until,
        row.pickup_code,
    )


class FulfilmentRefused(Exception):
    """The fulfilment cannot move that way (``reason``: unknown, not_pending, conflict)."""

    def __init__(self, reason: str, status: str = "") -> None:
        super().__init__(f"{reason} (status {status or 'none'})")
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Fulfilment:
    """A redemption's fulfilment record, as the shop reads it."""

    redemption_id: int
    item_id: int
    item_name: str
    kind: str
    delivery: str | None
    member_id: int
    customer_ref: str | None
    points: int
    cash_fen: int
    status: str
    pickup_code: str | None
    tracking_number: str | None
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    replayed: bool = False


def _fulfilment_query() -> Any:
    return (
        select(Redemption, RewardItem, Member.customer_ref)
        .join(RewardItem, RewardItem.id == Redemption.item_id)
        .join(Member, Member.id == Redemption.member_id)
    )


def _fulfilment(row: Any, replayed: bool = False) -> Fulfilment:
    redemption, item, customer_ref = row
    return Fulfilment(
        redemption.id,
        item.id,
        item.name,
        item.kind,
        item.delivery,
        redemption.member_id,
        customer_ref,
        redemption.points,
        redemption.cash_fen,
        redemption.status,
        redemption.pickup_code,
        redemption.tracking_number,
        redemption.created_at,
        redemption.closed_at,
        redemption.closed_by,
        replayed,
    )


async def fulfilments(
    session: AsyncSession,
    *,
    status: str | None = "pending",
    pickup_code: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[Fulfilment]:
    """Fulfilment records (not coupons), oldest first, after id ``after``; of one status
    (None: any) or one pickup code."""
    query = _fulfilment_query().where(Redemption.coupon_id.is_(None), Redemption.id > after)
    if status is not None:
        query = query.where(Redemption.status == status)
    if pickup_code is not None:
        query = query.where(Redemption.pickup_code == pickup_code)
    rows = await session.execute(query.order_by(Redemption.id).limit(limit))
    return [_fulfilment(row) for row in rows]


async def close_fulfilment(
    session: AsyncSession,
    redemption_id: int,
    status: Literal["picked_up", "shipped", "cancelled"],
    *,
    by: str,
    now: datetime,
    tracking_number: str | None = None,
) -> Fulfilment:
    """Close a pending fulfilment: ``picked_up``, ``shipped`` (with a tracking number) or
    ``cancelled`` (the points go back with ``restore``, keeping their expiry; the stock goes
    back too). Closing it the same way again is a replay that writes nothing; another way,
    FulfilmentRefused("not_pending"). Locks as a redemption does: member, item, then the
    redemption."""
    if status == "shipped" and not tracking_number:
        raise ValueError("tracking_number: a shipped gift needs one")
    await write_first(session, Redemption, redemption_id)
    found = (
        await session.execute(
            select(Redemption.member_id, Redemption.item_id).where(
                Redemption.id == redemption_id, Redemption.coupon_id.is_(None)
            )
        )
    ).first()
    if found is None:
        raise FulfilmentRefused("unknown")
    await lock_members(session, (found.member_id,))
    item = await lock_item(session, found.item_id)
    redemption = await session.scalar(
        select(Redemption)
        .where(Redemption.id == redemption_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if item is None or redemption is None:
        raise FulfilmentRefused("unknown")
    if redemption.status != "pending":
        same = redemption.status == status and (
            status != "shipped" or redemption.tracking_number == tracking_number
        )
        if not same:
            raise FulfilmentRefused("not_pending", redemption.status)
        row = (
            await session.execute(_fulfilment_query().where(Redemption.id == redemption_id))
        ).one()
        return _fulfilment(row, replayed=True)
    if status == "cancelled":
        await restore(
            session,
            redemption.member_id,
            [(lot_id, points) for lot_id, points in redemption.drawn],
            reason=f"reward:cancelled:{redemption.id}",
            key=f"reward-cancel:{redemption.id}",
            at=now,
        )
        if item.stock is not None:
            item.stock += 1
    redemption.status = status
    redemption.tracking_number = tracking_number if status == "shipped" else None
    redemption.closed_at, redemption.closed_by = now, by[:64]
    await session.flush()
    row = (await session.execute(_fulfilment_query().where(Redemption.id == redemption_id))).one()
    return _fulfilment(row)


async def redemption_counts(
    session: AsyncSession, item_id: int | None = None
) -> dict[int, dict[str, int]]:
    """Per item (or for one), its redemptions by status (the catalogue lists)."""
    query = select(Redemption.item_id, Redemption.status, func.count()).group_by(
        Redemption.item_id, Redemption.status
    )
    if item_id is not None:
        query = query.where(Redemption.item_id == item_id)
    rows = await session.execute(query)
    counts: dict[int, dict[str, int]] = {}
    for item_id, status, count in rows:
        counts.setdefault(item_id, {})[status] = count
    return counts
