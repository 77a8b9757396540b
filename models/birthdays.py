"""Birthday operations as the seeds run them (seed 002): next month's list drawn by the 25th,
the next 7 days' list every day, what each member will receive, and the fulfilment of physical
gifts (shipped, with the courier's tracking number) in ``birthday_gifts``.

A member celebrates on their birthday's day and month; 29 February birthdays fall on
28 February in other years, as for the birthday push (models/members.py). Members without a
birthday are in no list.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, extract, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.benefit_settings import ByTierRule
from models.benefits.engine import active_benefits
from models.members import Member
from models.rules import ProgrammeRules

PENDING, SHIPPED = "pending", "shipped"
# Longest window a list covers: a month.
MAX_DAYS = 31


class BirthdayGift(Base):
    """A physical birthday gift's fulfilment: one per member and year."""

    __tablename__ = "birthday_gifts"
    __table_args__ = (UniqueConstraint("member_id", "year", name="uq_birthday_gifts_member_year"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    year: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class BirthdayRow:
    """A member in a birthday list: who, the day they celebrate, and what they receive."""

    member_id: int
    name: str | None
    phone: str | None
    tier: str
    segment: str | None
    birthday: date
    day: date  # the day celebrated in the list's window
    subscribed: bool
    coupon: str | None  # the birthday coupon kind of the member's tier, if any
    physical_gift: bool
    gift_status: str | None  # pending / shipped for a physical gift
    tracking_number: str | None


def celebrated_on(birthday: date, year: int) -> date:
    """The day a birthday is celebrated in ``year`` (29 February → 28 February off leap years)."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def next_month(today: date) -> tuple[date, date]:
    """The first and last day of the month after ``today``'s."""
    first = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def next_days(today: date, days: int = 7) -> tuple[date, date]:
    """``today`` and the ``days - 1`` days after it."""
    return today, today + timedelta(days=days - 1)


def gets_physical_gift(rules: ProgrammeRules, tier: str, segment: str | None) -> bool:
    """Whether a member's birthday brings a physical gift to ship (their tier or segment)."""
    gifts = rules.birthday_gifts
    return tier in gifts.tiers or (segment is not None and segment in gifts.segments)


async def birthdays_between(
    session: AsyncSession, rules: ProgrammeRules, first: date, last: date
) -> list[BirthdayRow]:
    """Members who celebrate a birthday from ``first`` to ``last`` (at most 31 days; the window
    may cross a month or a year), by day then name, with what they will receive. One
    statement for the members, one for the gifts' fulfilment."""
    if last < first or (last - first).days >= MAX_DAYS:
        raise ValueError(f"a birthday list covers 1 to {MAX_DAYS} days")
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    keys = {d.month * 100 + d.day for d in days}
    # 29 February birthdays are celebrated on 28 February in other years.
    if any(d.month == 2 and d.day == 28 and not calendar.isleap(d.year) for d in days):
        keys.add(229)
    table = Member.__table__
    month_day = extract("month", table.c.birthday) * 100 + extract("day", table.c.birthday)
    rows = await session.execute(
        select(
            table.c.id,
            table.c.name,
            table.c.phone,
            table.c.tier,
            table.c.segment,
            table.c.birthday,
            table.c.subscribed,
        ).where(table.c.birthday.is_not(None), month_day.in_(sorted(keys)))
    )
    found: list[tuple[date, tuple]] = []
    for row in rows:
        day = next(
            (d for d in days if celebrated_on(row.birthday, d.year) == d),
            None,
        )
        if day is not None:
            found.append((day, tuple(row)))
    years = sorted({d.year for d in days})
    birthday_rule = (await active_benefits(session, rules)).birthday
    gifts = {
        (gift.member_id, gift.year): gift
        for gift in await session.scalars(
            select(BirthdayGift).where(
                BirthdayGift.member_id.in_([row[0] for _, row in found]),
                BirthdayGift.year.in_(years),
            )
        )
    }
    listed = []
    for day, (member_id, name, phone, tier, segment, birthday, subscribed) in found:
        physical = gets_physical_gift(rules, tier, segment)
        gift = gifts.get((member_id, day.year))
        listed.append(
            BirthdayRow(
                member_id=member_id,
                name=name,
                phone=phone,
                tier=tier,
                segment=segment,
                birthday=birthday,
                day=day,
                subscribed=bool(subscribed),
                coupon=_tier_coupon(birthday_rule, tier),
                physical_gift=physical,
                gift_status=(gift.status if gift else PENDING) if physical else None,
                tracking_number=gift.tracking_number if gift else None,
            )
        )
    return sorted(listed, key=lambda r: (r.day, r.name or "", r.member_id))


def _tier_coupon(rule: ByTierRule, tier: str) -> str | None:
    """The birthday coupon kind the rule gives members of ``tier`` (None: paused or none)."""
    gift = rule.by_tier.get(tier)
    return gift.coupon or None if rule.enabled and gift is not None else None


class NoGiftDue(Exception):
    """The member has no birthday that year, or their birthday brings no physical gift."""


async def mark_gift_shipped(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    year: int,
    tracking_number: str,
    staff: str,
    now: datetime,
) -> BirthdayGift:
    """Record the member's ``year`` birthday gift as shipped with the courier's tracking
    number (again: the number is corrected). NoGiftDue when no physical gift is due."""
    tracking = tracking_number.strip()
    if not 1 <= len(tracking) <= 64:
        raise ValueError("a tracking number has 1 to 64 characters")
    member = await session.get(Member, member_id)
    if member is None or member.birthday is None:
        raise NoGiftDue("no birthday")
    if not gets_physical_gift(rules, member.tier, member.segment):
        raise NoGiftDue("no physical gift for this member's tier or segment")
    values = {
        "status": SHIPPED,
        "tracking_number": tracking,
        "shipped_at": now,
        "updated_by": staff,
        "updated_at": now,
    }
    stmt = (
        dialect_insert(session)(BirthdayGift)
        .values(member_id=member_id, year=year, **values)
        .on_conflict_do_update(index_elements=["member_id", "year"], set_=values)
        .returning(BirthdayGift)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one()
