"""Looking a member up outside a conversation, and everything the console's member card shows.

Search takes one query and tries every key a member can be found by: openid, binding code and
shop order id (exact), name (contains), and the phone number: its last 4 digits for everyone
allowed to search, the whole number only where ``full_phone`` (admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.binding import BindingCode
from models.conversations import Conversation
from models.coupons import Coupon
from models.ledger import LedgerEntry, PointLot
from models.members import Member
from models.orders import Order
from models.ratings import FollowUp, Rating
from models.referrals import Referral
from models.tiers import TierChange

SEARCH_LIMIT = 50
CARD_ROWS = 20


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_members(
    session: AsyncSession, query: str, *, full_phone: bool, limit: int = SEARCH_LIMIT
) -> list[Member]:
    """Members matching ``query`` by any key, by name then id."""
    query = query.strip()
    if not query:
        return []
    by_code = select(BindingCode.member_id).where(BindingCode.code == query.upper())
    by_order = select(Order.member_id).where(Order.shop_order_id == query)
    conditions = [
        Member.openid == query,
        Member.id.in_(by_code),
        Member.id.in_(by_order),
        Member.name.like(f"%{_like_escaped(query)}%", escape="\\"),
    ]
    if query.isdigit() and len(query) == 4:
        conditions.append(Member.phone.like(f"%{query}"))
    elif full_phone and query.isdigit() and len(query) >= 7:
        conditions.append(Member.phone == query)
    rows = await session.scalars(
        select(Member).where(or_(*conditions)).order_by(Member.name, Member.id).limit(limit)
    )
    return list(rows.all())


@dataclass(frozen=True, slots=True)
class MemberCard:
    """What the console's member card shows of one member (the latest rows of each)."""

    member: Member
    lots: list[PointLot]  # points still there, soonest to expire first
    coupons: list[Coupon]
    ledger: list[LedgerEntry]
    tier_changes: list[TierChange]
    referred: list[tuple[Referral, Member]]  # friends this member brought
    referred_by: Member | None
    ratings: list[Rating]
    conversations: list[Conversation]
    follow_ups: list[FollowUp]
    orders: list[Order]


async def member_card(session: AsyncSession, member_id: int) -> MemberCard | None:
    """The card of member ``member_id``, or None if there is no such member."""
    member = await session.get(Member, member_id)
    if member is None:
        return None

    async def latest(model: type, *order: object) -> list:  # type: ignore[type-arg]
        query = select(model).where(model.member_id == member_id)  # type: ignore[attr-defined]
        return list((await session.scalars(query.order_by(*order).limit(CARD_ROWS))).all())

    referred = [
        (referral, friend)
        for referral, friend in await session.execute(
            select(Referral, Member)
            .join(Member, Member.id == Referral.referee_id)
            .where(Referral.referrer_id == member_id)
            .order_by(Referral.attributed_at.desc())
            .limit(CARD_ROWS)
        )
    ]
    referred_by = await session.scalar(
        select(Member)
        .join(Referral, Referral.referrer_id == Member.id)
        .where(Referral.referee_id == member_id)
    )
    lots = await session.scalars(
        select(PointLot)
        .where(PointLot.member_id == member_id, PointLot.remaining > 0)
        .order_by(PointLot.expires_at, PointLot.id)
        .limit(CARD_ROWS)
    )
    return MemberCard(
        member=member,
        lots=list(lots.all()),
        coupons=await latest(Coupon, Coupon.issued_at.desc(), Coupon.id.desc()),
        ledger=await latest(LedgerEntry, LedgerEntry.id.desc()),
        tier_changes=await latest(TierChange, TierChange.id.desc()),
        referred=referred,
        referred_by=referred_by,
        ratings=await latest(Rating, Rating.answered_at.desc()),
        conversations=await latest(Conversation, Conversation.queued_at.desc()),
        follow_ups=await latest(FollowUp, FollowUp.status.desc(), FollowUp.due_at.desc()),
        orders=await latest(Order, Order.paid_at.desc()),
    )


async def expiring_points(session: AsyncSession, member_id: int, before: datetime) -> int:
    """Points of the member's lots that expire before ``before``."""
    total = await session.scalar(
        select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id, PointLot.remaining > 0, PointLot.expires_at < before
        )
    )
    return int(total or 0)
