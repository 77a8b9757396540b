"""Tiers: which one a member's trailing purchases earn, how far the next one is, and changes.

Upgrades take effect at once (on an order); downgrades happen only at the periodic
re-evaluation. Every change is kept in ``tier_changes``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import BigInteger, ForeignKey, Select, String, bindparam, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.events import record_event
from models.members import Member
from models.orders import FUTURE_TOLERANCE, Order
from models.rules import ProgrammeRules, TierRule
from models.state import get_state

TOP_SPEND_THRESHOLD = "tiers.top_spend_threshold_fen"


class TierChange(Base):
    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_tier: Mapped[str] = mapped_column(String(16))
    to_tier: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Stats:
    """A member's purchases over the trailing tier window (net of refunds)."""

    orders: int
    spend_fen: int


@dataclass(frozen=True, slots=True)
class Progress:
    """What takes the member to ``next_tier`` (None at the top): either suffices."""

    current: TierRule
    next_tier: TierRule | None
    orders_needed: int | None
    spend_needed_fen: int | None


def window_start(rules: ProgrammeRules, now: datetime) -> datetime:
    """The start of the trailing window tiers are judged on."""
    return now - relativedelta(months=rules.tier_window_months)


async def member_stats(
    session: AsyncSession, rules: ProgrammeRules, member_id: int, now: datetime
) -> Stats:
    """Orders (not fully refunded) and net spend in the trailing window ending ``now``.

    Orders stamped up to ``FUTURE_TOLERANCE`` ahead count too: they are accepted (a shop's
    clock a little fast), so an order counts for its own upgrade and for the progress shown
    right after it.
    """
    net = Order.amount_fen - Order.refunded_fen
    row = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(net), 0)).where(
                Order.member_id == member_id,
                Order.paid_at > window_start(rules, now),
                Order.paid_at <= now + FUTURE_TOLERANCE,
                net > 0,
            )
        )
    ).one()
    return Stats(int(row[0]), int(row[1]))


def _standing_statement() -> Select[tuple[str, int, int]]:
    orders, members = Order.__table__.c, Member.__table__.c
    net = orders.amount_fen - orders.refunded_fen
    window = (
        orders.member_id == members.id,
        orders.paid_at > bindparam("since", type_=UTCDateTime),
        orders.paid_at <= bindparam("until", type_=UTCDateTime),
        net > 0,
    )
    count = select(func.count()).where(*window).scalar_subquery()
    spend = select(func.coalesce(func.sum(net), 0)).where(*window).scalar_subquery()
    return select(members.tier, count, spend).where(members.id == bindparam("member_id"))


# Built once: building and keying the statement per ask cost more than running it.
_STANDING = _standing_statement()


async def tier_standing(
    connection: AsyncConnection | AsyncSession, rules: ProgrammeRules, member_id: int, now: datetime
) -> tuple[str, Stats] | None:
    """The member's tier code and ``member_stats`` in one statement (None: no such member).

    The 等级 answer runs it on a connection without a unit of work: one round trip instead of
    loading the member through the session and then counting, with the same rules as
    ``member_stats`` (which the tier changes keep using).
    """
    params = {
        "member_id": member_id,
        "since": window_start(rules, now),
        "until": now + FUTURE_TOLERANCE,
    }
    row = (await connection.execute(_STANDING, params)).one_or_none()
    return None if row is None else (row[0], Stats(int(row[1]), int(row[2])))


def qualifying_tier(
    rules: ProgrammeRules, stats: Stats, top_threshold_fen: int | None = None
) -> TierRule:
    """The highest tier whose purchase count, spend or top-spender rule the stats meet."""
    best = rules.tiers[0]
    for tier in rules.tiers:
        by_orders = stats.orders >= tier.min_orders
        by_spend = tier.min_spend_fen is not None and stats.spend_fen >= tier.min_spend_fen
        by_rank = (
            tier.top_spend_percent is not None
            and top_threshold_fen is not None
            and stats.spend_fen > 0
            and stats.spend_fen >= top_threshold_fen
        )
        if by_orders or by_spend or by_rank:
            best = tier
    return best


def progress(rules: ProgrammeRules, current_code: str, stats: Stats) -> Progress:
    """How far the member is from the tier above their current one."""
    current = rules.tier(current_code)
    index = rules.tiers.index(current)
    if index + 1 >= len(rules.tiers):
        return Progress(current, None, None, None)
    nxt = rules.tiers[index + 1]
    spend = None if nxt.min_spend_fen is None else max(0, nxt.min_spend_fen - stats.spend_fen)
    return Progress(current, nxt, max(0, nxt.min_orders - stats.orders), spend)


async def top_spend_threshold(session: AsyncSession) -> int | None:
    """The spend that put a member in the top-spender tier at the last re-evaluation."""
    value = await get_state(session, TOP_SPEND_THRESHOLD)
    return int(value) if value is not None else None


# Called on an upgrade with (member id, tier reached, levels risen): what it gave, told in the
# upgrade's event (models/order_posting.py grants the upgrade gifts through it).
UpgradeGifts = Callable[[int, str, int], Awaitable[list[dict[str, Any]]]]


async def upgrade_if_earned(
    session: AsyncSession,
    rules: ProgrammeRules,
    member: Member,
    now: datetime,
    gifts: UpgradeGifts | None = None,
) -> TierChange | None:
    """Raise the member's tier at once if their purchases now earn a higher one; ``gifts``
    grants what the upgrade brings, recorded in the ``tier_upgraded`` event."""
    stats = await member_stats(session, rules, member.id, now)
    earned = qualifying_tier(rules, stats, await top_spend_threshold(session))
    codes = [t.code for t in rules.tiers]
    old = rules.tier(member.tier)
    if codes.index(earned.code) <= codes.index(old.code):
        return None
    member.tier, member.tier_since = earned.code, now
    change = TierChange(
        member_id=member.id, from_tier=old.code, to_tier=earned.code, reason="order", created_at=now
    )
    session.add(change)
    levels = codes.index(earned.code) - codes.index(old.code)
    given = await gifts(member.id, earned.code, levels) if gifts is not None else []
    await record_event(
        session,
        member.id,
        "tier_upgraded",
        {
            "from": old.code,
            "to": earned.code,
            "levels": levels,
            "gifts": given,
        },
        now,
    )
    return change
