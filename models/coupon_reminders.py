"""Unused coupons reminded before they expire: one row per coupon ever reminded.

The row is the claim: it is inserted with ``ON CONFLICT DO NOTHING`` in the transaction that
plans the reminder, so a rerun, a missed day caught up or a second scheduler never reminds a
coupon twice (of two concurrent claims, the second waits for the first's row and then finds
it taken).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, exists, literal, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.coupons import Coupon
from models.members import Member


class CouponReminder(Base):
    __tablename__ = "coupon_reminders"

    coupon_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"),
        ForeignKey("coupons.id"),
        primary_key=True,
        autoincrement=False,
    )
    reminded_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class DueCoupon:
    """A coupon to remind its member of."""

    id: int
    member_id: int
    kind: str
    code: str
    valid_until: datetime


_coupon = Coupon.__table__.c


def _unreminded() -> object:
    return ~exists().where(CouponReminder.coupon_id == _coupon.id)


async def coupons_to_remind(
    session: AsyncSession, now: datetime, days: int, batch: int = 1000
) -> AsyncIterator[list[DueCoupon]]:
    """Issued coupons never reminded, of subscribed members, expiring within ``days`` of
    ``now`` and held longer than that (one issued inside the window was just announced),
    streamed in batches that never split a member's coupons (a range scan of the partial
    index on ``valid_until`` for issued coupons)."""
    members = Member.__table__
    window = timedelta(days=days)
    query = (
        select(_coupon.id, _coupon.member_id, _coupon.kind, _coupon.code, _coupon.valid_until)
        .add_columns(_coupon.issued_at)
        .join(members, members.c.id == _coupon.member_id)
        .where(
            _coupon.status == "issued",
            _coupon.valid_until > now,
            _coupon.valid_until <= now + window,
            _unreminded(),
            members.c.subscribed.is_(True),
            members.c.openid.is_not(None),
        )
        .order_by(_coupon.member_id, _coupon.valid_until, _coupon.id)
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    pending: list[DueCoupon] = []
    async for rows in result.partitions(batch):
        pending += [
            DueCoupon(coupon_id, member_id, kind, code, until)
            for coupon_id, member_id, kind, code, until, issued_at in rows
            if until - issued_at > window
        ]
        if not pending:
            continue
        # The last member's coupons may go on in the next partition: keep them for it.
        last = pending[-1].member_id
        ready = [due for due in pending if due.member_id != last]
        if ready:
            yield ready
            pending = [due for due in pending if due.member_id == last]
    if pending:
        yield pending


async def claim_reminders(
    session: AsyncSession, coupons: Sequence[DueCoupon], now: datetime
) -> list[DueCoupon]:
    """Mark these coupons reminded; those this call claimed (still issued, and reminded by no
    one else before), in their order. The caller plans the reminder in the same transaction."""
    if not coupons:
        return []
    insert = dialect_insert(session)
    table = CouponReminder.__table__
    ids = [due.id for due in coupons]
    stmt = (
        insert(table)
        .from_select(
            ["coupon_id", "reminded_at"],
            # In id order, as every claimer goes: two claims wait on each other, never deadlock.
            select(_coupon.id, literal(now, UTCDateTime))
            .where(_coupon.id.in_(ids), _coupon.status == "issued")
            .order_by(_coupon.id),
        )
        .on_conflict_do_nothing(index_elements=[table.c.coupon_id])
        .returning(table.c.coupon_id)
    )
    claimed = set((await session.execute(stmt)).scalars().all())
    return [due for due in coupons if due.id in claimed]
