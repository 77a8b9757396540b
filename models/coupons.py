"""Coupons (券): issued to a member from a configured kind, redeemed once by the shop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    bindparam,
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.codes import random_code
from models.members import Member
from models.orders import Order
from models.rules import CouponKind, ProgrammeRules

CODE_LENGTH = 12
# 31^12 codes: a collision is already unlikely once; several in a row mean something is broken.
CODE_ATTEMPTS = 5


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_member_id_status", "member_id", "status"),
        Index(
            "ix_coupons_valid_until_issued",
            "valid_until",
            postgresql_where=text("status = 'issued'"),
            sqlite_where=text("status = 'issued'"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(8), default="issued")
    reason: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shop_order_id: Mapped[str | None] = mapped_column(String(64))


class UnknownCouponKind(Exception):
    """The kind is not one of the programme's configured coupon kinds; nothing was written."""


class CouponConflict(Exception):
    """The idempotency key was used before for another member or kind; nothing was written."""


RefusalReason = Literal[
    "unknown",
    "expired",
    "used",
    "not_yours",
    "not_yet_valid",
    "revoked",
    "below_threshold",
    "not_first_order",
    "tier_not_eligible",
]


class CouponRefused(Exception):
    """The coupon cannot be redeemed, for ``reason``; nothing was written.

    ``threshold_fen`` is the amount the order must reach (``below_threshold`` only)."""

    def __init__(self, reason: RefusalReason, *, threshold_fen: int | None = None) -> None:
        super().__init__(reason)
        self.reason: RefusalReason = reason
        self.threshold_fen = threshold_fen


class OrderAmountRequired(ValueError):
    """The coupon has a threshold (满减) and the redemption did not say the order's amount;
    nothing was written."""


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """The coupon an issue produced; ``replayed`` when the key had issued it before."""

    coupon: Coupon
    replayed: bool


@dataclass(frozen=True, slots=True)
class RedeemedCoupon:
    """The coupon a redemption used; ``replayed`` when it was redeemed for this order before."""

    coupon: Coupon
    replayed: bool


def new_coupon_code() -> str:
    """A random code of 12 unambiguous characters (about 10^17.9 possibilities)."""
    return random_code(CODE_LENGTH)


async def issue_coupon(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    kind: str,
    *,
    reason: str,
    key: str,
    now: datetime,
    valid_days: int | None = None,
) -> IssuedCoupon:
    """Issue a coupon of ``kind`` to the member, valid from ``now`` for ``valid_days`` (by
    default the kind's).

    The same ``key`` for the same member and kind returns the coupon it issued first and
    writes nothing; for another member or kind it raises CouponConflict. An unconfigured
    kind raises UnknownCouponKind.
    """
    coupon_kind = rules.coupon_kind(kind)
    if coupon_kind is None:
        raise UnknownCouponKind(f"no coupon kind {kind!r} is configured")
    days = coupon_kind.valid_days if valid_days is None else valid_days
    if days < 1:
        raise ValueError("a coupon must be valid for at least one day")
    insert = dialect_insert(session)
    for _ in range(CODE_ATTEMPTS):
        # DO NOTHING covers both unique columns, so a concurrent issue with the same key waits
        # for the other transaction and then finds its coupon instead of failing.
        stmt = (
            insert(Coupon)
            .values(
                code=new_coupon_code(),
                member_id=member_id,
                kind=kind,
                status="issued",
                reason=reason[:200],
                idempotency_key=key,
                issued_at=now,
                valid_from=now,
                valid_until=now + timedelta(days=days),
            )
            .on_conflict_do_nothing()
            .returning(Coupon)
        )
        coupon = await session.scalar(stmt)
        if coupon is not None:
            return IssuedCoupon(coupon, replayed=False)
        existing = await session.scalar(select(Coupon).where(Coupon.idempotency_key == key))
        if existing is not None:
            if existing.member_id != member_id or existing.kind != kind:
                raise CouponConflict(f"idempotency key {key!r} issued a different coupon")
            return IssuedCoupon(existing, replayed=True)
        # Otherwise the random code was taken: draw another.
    raise RuntimeError(f"no free coupon code after {CODE_ATTEMPTS} attempts")


async def redeem_coupon(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    *,
    member_id: int | None,
    shop_order_id: str,
    now: datetime,
    order_amount_fen: int | None = None,
) -> RedeemedCoupon:
    """Redeem the coupon ``code`` against the shop's order (for ``member_id`` if given) of
    ``order_amount_fen``, checking its kind's conditions (models/rules.py ``CouponKind``):
    the amount reaches the threshold, the order is the member's first paid one, the member's
    tier is one the kind allows.

    Redeeming it again for the same order returns the first result and writes nothing.
    Otherwise CouponRefused says why not (OrderAmountRequired when a threshold coupon comes
    without the amount), and nothing is written. The conditions are the kind's as configured
    now; a coupon whose kind is no longer configured has none to check beyond its validity.
    """
    current = await session.scalar(
        select(Coupon).where(Coupon.code == code).execution_options(populate_existing=True)
    )
    if current is not None and current.status == "issued":
        if member_id is not None and current.member_id != member_id:
            raise CouponRefused("not_yours")
        if current.valid_from <= now < current.valid_until:
            kind = rules.coupon_kind(current.kind)
            if kind is not None:
                await _check_conditions(session, kind, current, shop_order_id, order_amount_fen)
    conditions = [
        Coupon.code == code,
        Coupon.status == "issued",
        Coupon.valid_from <= now,
        Coupon.valid_until > now,
    ]
    if member_id is not None:
        conditions.append(Coupon.member_id == member_id)
    # One conditional UPDATE rather than read-then-write: of two concurrent redemptions the
    # second waits for the first's row lock, then no longer matches `status = 'issued'`.
    stmt = (
        update(Coupon)
        .where(*conditions)
        .values(status="redeemed", redeemed_at=now, shop_order_id=shop_order_id)
        .returning(Coupon)
        .execution_options(populate_existing=True)
    )
    coupon = await session.scalar(stmt)
    if coupon is not None:
        return RedeemedCoupon(coupon, replayed=False)
    # Nothing matched: read the coupon (as committed now) only to say why.
    coupon = await session.scalar(
        select(Coupon).where(Coupon.code == code).execution_options(populate_existing=True)
    )
    if coupon is None:
        raise CouponRefused("unknown")
    if member_id is not None and coupon.member_id != member_id:
        raise CouponRefused("not_yours")
    if coupon.status == "redeemed":
        if coupon.shop_order_id == shop_order_id:
            return RedeemedCoupon(coupon, replayed=True)
        raise CouponRefused("used")
    if coupon.status == "revoked":
        raise CouponRefused("revoked")
    if coupon.status == "expired" or coupon.valid_until <= now:
        raise CouponRefused("expired")
    if coupon.valid_from > now:
        raise CouponRefused("not_yet_valid")
    raise RuntimeError(f"coupon {code} has unexpected status {coupon.status!r}")


async def _check_conditions(
    session: AsyncSession,
    kind: CouponKind,
    coupon: Coupon,
    shop_order_id: str,
    order_amount_fen: int | None,
) -> None:
    """CouponRefused (or OrderAmountRequired) unless the order meets ``kind``'s conditions."""
    if kind.type == "threshold":
        if order_amount_fen is None:
            raise OrderAmountRequired(f"coupon kind {kind.code} needs the order amount")
        if order_amount_fen < kind.threshold_fen:
            raise CouponRefused("below_threshold", threshold_fen=kind.threshold_fen)
    if kind.tiers:
        tier = await session.scalar(select(Member.tier).where(Member.id == coupon.member_id))
        if tier not in kind.tiers:
            raise CouponRefused("tier_not_eligible")
    if kind.first_order_only:
        # Another paid order not refunded in full makes this one not the first; the order
        # being redeemed against may already be recorded (the shop reported it first) or not.
        earlier = await session.scalar(
            select(Order.id)
            .where(
                Order.member_id == coupon.member_id,
                Order.shop_order_id != shop_order_id,
                Order.refunded_fen < Order.amount_fen,
            )
            .limit(1)
        )
        if earlier is not None:
            raise CouponRefused("not_first_order")


async def usable_coupons(session: AsyncSession, member_id: int, now: datetime) -> list[Coupon]:
    """The member's coupons that can be redeemed at ``now``, soonest to expire first."""
    query = (
        select(Coupon)
        .where(
            Coupon.member_id == member_id,
            Coupon.status == "issued",
            Coupon.valid_from <= now,
            Coupon.valid_until > now,
        )
        .order_by(Coupon.valid_until, Coupon.id)
    )
    return list((await session.scalars(query)).all())


@dataclass(frozen=True, slots=True)
class ListedCoupon:
    """What the member's list of coupons shows of one."""

    kind: str
    code: str
    valid_until: datetime


_coupon = Coupon.__table__.c
# Built once: building and keying the statement per ask cost more than running it.
_USABLE = (
    select(_coupon.kind, _coupon.code, _coupon.valid_until)
    .where(
        _coupon.member_id == bindparam("member_id"),
        _coupon.status == "issued",
        _coupon.valid_from <= bindparam("now", type_=UTCDateTime),
        _coupon.valid_until > bindparam("now", type_=UTCDateTime),
    )
    .order_by(_coupon.valid_until, _coupon.id)
)


async def list_usable_coupons(
    connection: AsyncConnection | AsyncSession, member_id: int, now: datetime
) -> list[ListedCoupon]:
    """``usable_coupons``' coupons, in its order, as the three columns the 我的券 answer shows:
    one Core statement on a connection without a unit of work, no ORM objects."""
    rows = await connection.execute(_USABLE, {"member_id": member_id, "now": now})
    return [ListedCoupon(*row) for row in rows]


async def expire_coupons(session: AsyncSession, now: datetime) -> int:
    """Mark every issued coupon whose validity ended by ``now`` as expired; how many were."""
    result = await session.execute(
        update(Coupon)
        .where(Coupon.status == "issued", Coupon.valid_until <= now)
        .values(status="expired")
        # A job in its own session: no loaded coupons to keep in step.
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def coupon_stats(
    session: AsyncSession, since: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Per kind, of the coupons issued since ``since`` (all if None): how many were issued,
    and how many of those are redeemed and expired (redemption rate = redeemed / issued).

    Coupons past their validity count as expired once ``expire_coupons`` has marked them.
    """
    query = select(
        Coupon.kind,
        func.count(),
        func.count(case((Coupon.status == "redeemed", 1))),
        func.count(case((Coupon.status == "expired", 1))),
    ).group_by(Coupon.kind)
    if since is not None:
        query = query.where(Coupon.issued_at >= since)
    rows = await session.execute(query)
    return {
        kind: {"issued": issued, "redeemed": redeemed, "expired": expired}
        for kind, issued, redeemed, expired in rows
    }
