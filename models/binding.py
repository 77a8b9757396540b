"""Binding a follower to a shop customer with a one-time code (never on a phone number)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, String, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.codes import ALPHABET, random_code
from models.ledger import lock_members, note_points_changed
from models.members import Member

CODE_LENGTH = 8


class BindingCode(Base):
    __tablename__ = "binding_codes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(16), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by_openid: Mapped[str | None] = mapped_column(String(64))


class BindingRefused(Exception):
    """The code cannot bind this follower: ``reason`` is invalid, expired, used or taken."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_code(text: str) -> str | None:
    """The code in a member's message ("绑定 AB3D5FGH" or the bare code), or None."""
    candidate = text.strip().upper().removeprefix("绑定").strip().replace(" ", "")
    if len(candidate) != CODE_LENGTH or any(ch not in ALPHABET for ch in candidate):
        return None
    # A bare eight-letter word is more likely English than a code: codes always hold a digit.
    if not any(ch.isdigit() for ch in candidate):
        return None
    return candidate


def new_code() -> str:
    """8 random unambiguous characters, at least one a digit (see normalize_code)."""
    while True:
        code = random_code(CODE_LENGTH)
        if any(ch.isdigit() for ch in code):
            return code


async def create_binding_code(
    session: AsyncSession,
    customer_ref: str,
    now: datetime,
    hours: int,
    *,
    name: str | None = None,
    phone: str | None = None,
) -> BindingCode:
    """A one-time code for the shop's customer ``customer_ref`` (created if new)."""
    customer = await session.scalar(select(Member).where(Member.customer_ref == customer_ref))
    if customer is None:
        customer = Member(
            customer_ref=customer_ref,
            subscribed=False,
            created_at=now,
            name=name,
            phone=phone,
            tags=[],
        )
        session.add(customer)
        await session.flush()
    else:
        customer.name = name or customer.name
        customer.phone = phone or customer.phone
    binding = BindingCode(
        code=new_code(),
        member_id=customer.id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(binding)
    await session.flush()
    return binding


_MEMBER_TABLES = (
    "orders",
    "ledger_entries",
    "point_lots",
    "coupons",
    "tier_changes",
    "member_events",
    "binding_codes",
    "deliveries",
    "ratings",
    "conversations",
    "compensations",
    "hook_deliveries",
)
# Tables where the customer may already have the row the follower has (the same key besides
# the member): the customer's row stays, the follower's moves only where it does not clash.
_MEMBER_KEYED_TABLES = (
    ("referral_links", "member_id", ()),
    ("referral_stars", "member_id", ("quarter",)),
    ("member_recaps", "member_id", ("year",)),
    ("referrals", "referee_id", ()),
    ("campaign_members", "member_id", ("run_id",)),
    # A call planned for both in the same period is kept once (low ratings have no period).
    ("follow_ups", "member_id", ("purpose", "period")),
    ("benefit_grants", "member_id", ("rule", "period")),
)


async def claim_binding_code(
    session: AsyncSession, code: str, openid: str, now: datetime
) -> Member:
    """Link the follower ``openid`` to the code's customer, history and points included.

    If the follower already has a member row of their own (a follower who earned points
    before binding), its orders, ledger, lots and coupons move to the customer and the
    balances add up; the follower's row is then removed. Raises BindingRefused.

    Both member rows are locked (``lock_members``, the ledger's lock order) before either is
    read, so an order or redemption of the follower's committing meanwhile is either wholly
    before the merge (its points in the balance that is added) or waits for it.
    """
    binding = await session.scalar(
        select(BindingCode).where(BindingCode.code == code).with_for_update()
    )
    if binding is None:
        raise BindingRefused("invalid")
    if binding.used_at is not None:
        raise BindingRefused("used")
    if binding.expires_at <= now:
        raise BindingRefused("expired")
    follower_id = await session.scalar(select(Member.id).where(Member.openid == openid))
    await lock_members(session, (m for m in (binding.member_id, follower_id) if m is not None))
    customer = await session.get_one(Member, binding.member_id, populate_existing=True)
    if customer.openid is not None and customer.openid != openid:
        raise BindingRefused("used")
    if follower_id is not None and follower_id != customer.id:
        follower = await session.get(Member, follower_id, populate_existing=True)
        # Bound to a customer already, or by another claim while this one waited for the lock.
        if follower is None or follower.openid != openid or follower.customer_ref is not None:
            raise BindingRefused("taken")
        await _merge_into(session, follower, customer)
    customer.openid = openid
    binding.used_at, binding.used_by_openid = now, openid
    await session.flush()
    return customer


async def _merge_into(session: AsyncSession, follower: Member, customer: Member) -> None:
    note_points_changed(session, (follower.id, customer.id))
    for table in _MEMBER_TABLES:
        await session.execute(
            text(f"UPDATE {table} SET member_id = :to WHERE member_id = :old"),
            {"to": customer.id, "old": follower.id},
        )
    for table, column, keys in _MEMBER_KEYED_TABLES:
        same = "".join(f" AND o.{key} = {table}.{key}" for key in keys)
        await session.execute(
            text(
                f"UPDATE {table} SET {column} = :to WHERE {column} = :old AND NOT EXISTS "
                f"(SELECT 1 FROM {table} AS o WHERE o.{column} = :to{same})"
            ),
            {"to": customer.id, "old": follower.id},
        )
        await session.execute(
            text(f"DELETE FROM {table} WHERE {column} = :old"), {"old": follower.id}
        )
    await session.execute(
        text("UPDATE referrals SET referrer_id = :to WHERE referrer_id = :old"),
        {"to": customer.id, "old": follower.id},
    )
    customer.points_balance += follower.points_balance
    customer.subscribed = follower.subscribed
    customer.subscribed_at = follower.subscribed_at or customer.subscribed_at
    customer.unsubscribed_at = follower.unsubscribed_at
    customer.last_interaction_at = follower.last_interaction_at
    if customer.birthday is None:
        customer.birthday = follower.birthday
        customer.birthday_bonus_from = follower.birthday_bonus_from
    # The follower's 退订 was theirs: it goes with the openid.
    customer.marketing_opted_out_at = follower.marketing_opted_out_at
    # The follower's row goes; its openid must be free before the customer takes it.
    follower.openid = None
    await session.flush()
    await session.delete(follower)
    await session.flush()
