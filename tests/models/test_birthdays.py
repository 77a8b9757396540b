"""Birthday lists (next 7 days, next month) across month and year ends, 29 February, members
without a birthday, and the fulfilment of physical gifts (both lanes)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.birthdays import (
    PENDING,
    SHIPPED,
    NoGiftDue,
    birthdays_between,
    celebrated_on,
    mark_gift_shipped,
    next_days,
    next_month,
)
from models.members import Member
from models.rules import ProgrammeRules

RULES = ProgrammeRules()
NOW = datetime(2027, 1, 28, 4, tzinfo=UTC)
_serial = itertools.count()


# name → (birthday, tier, segment)
PEOPLE = {
    "jan27": (date(1990, 1, 27), "basic", None),
    "jan28": (date(1991, 1, 28), "diamond", "core"),
    "feb03": (date(1992, 2, 3), "silver", "other"),
    "feb04": (date(1993, 2, 4), "basic", None),
    "feb28": (date(1994, 2, 28), "gold", "core"),
    "feb29": (date(2000, 2, 29), "basic", None),
    "mar01": (date(1995, 3, 1), "basic", None),
    "jan02": (date(1996, 1, 2), "basic", None),
    "dec31": (date(1997, 12, 31), "basic", None),
    "nobirthday": (None, "diamond", "core"),
}


async def _people(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions.begin() as session:
        members = {
            name: Member(
                openid=f"o_bday_{name}_{next(_serial)}",
                name=name,
                phone="13812345678",
                birthday=birthday,
                tier=tier,
                segment=segment,
                subscribed=True,
            )
            for name, (birthday, tier, segment) in PEOPLE.items()
        }
        session.add_all(members.values())
        await session.flush()
        return {name: member.id for name, member in members.items()}


# (today, range, expected (name, day) in order)
LISTS = [
    (  # the next 7 days cross the end of January
        date(2027, 1, 28),
        "week",
        [("jan28", date(2027, 1, 28)), ("feb03", date(2027, 2, 3))],
    ),
    (  # and the end of the year
        date(2026, 12, 28),
        "week",
        [("dec31", date(2026, 12, 31)), ("jan02", date(2027, 1, 2))],
    ),
    (  # 2027 has no 29 February: celebrated on the 28th, with those born on the 28th
        date(2027, 2, 25),
        "week",
        [("feb28", date(2027, 2, 28)), ("feb29", date(2027, 2, 28)), ("mar01", date(2027, 3, 1))],
    ),
    (  # next month drawn in January 2027: February without a 29th
        date(2027, 1, 25),
        "month",
        [
            ("feb03", date(2027, 2, 3)),
            ("feb04", date(2027, 2, 4)),
            ("feb28", date(2027, 2, 28)),
            ("feb29", date(2027, 2, 28)),
        ],
    ),
    (  # 2028 is a leap year: on the day itself
        date(2028, 1, 25),
        "month",
        [
            ("feb03", date(2028, 2, 3)),
            ("feb04", date(2028, 2, 4)),
            ("feb28", date(2028, 2, 28)),
            ("feb29", date(2028, 2, 29)),
        ],
    ),
    (  # drawn in December: next month is January of the next year
        date(2026, 12, 20),
        "month",
        [
            ("jan02", date(2027, 1, 2)),
            ("jan27", date(2027, 1, 27)),
            ("jan28", date(2027, 1, 28)),
        ],
    ),
]


@pytest.mark.parametrize(("today", "span", "expected"), LISTS)
async def test_birthday_lists(
    sessions: async_sessionmaker[AsyncSession],
    today: date,
    span: str,
    expected: list[tuple[str, date]],
) -> None:
    await _people(sessions)
    first, last = next_month(today) if span == "month" else next_days(today)
    async with sessions() as session:
        rows = await birthdays_between(session, RULES, first, last)
    assert [(row.name, row.day) for row in rows] == expected
    assert all(row.name != "nobirthday" for row in rows)


def test_windows_and_the_day_celebrated() -> None:
    assert next_month(date(2026, 12, 31)) == (date(2027, 1, 1), date(2027, 1, 31))
    assert next_month(date(2027, 1, 31)) == (date(2027, 2, 1), date(2027, 2, 28))
    assert next_days(date(2027, 1, 28)) == (date(2027, 1, 28), date(2027, 2, 3))
    assert celebrated_on(date(2000, 2, 29), 2027) == date(2027, 2, 28)
    assert celebrated_on(date(2000, 2, 29), 2028) == date(2028, 2, 29)


async def test_what_each_member_receives_and_shipping_a_physical_gift(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _people(sessions)
    async with sessions() as session:
        rows = await birthdays_between(session, RULES, date(2027, 1, 28), date(2027, 2, 3))
    by_name = {row.name: row for row in rows}
    # Diamond (and core) members get the custom gift to ship; the coupon is the tier's (the
    # birthday rule's by_tier: basic members none, their month's double points only).
    assert (by_name["jan28"].physical_gift, by_name["jan28"].gift_status) == (True, PENDING)
    assert (by_name["feb03"].physical_gift, by_name["feb03"].gift_status) == (False, None)
    expected = {"basic": None, "silver": "birthday_gift", "diamond": "birthday_gift_200"}
    assert all(row.coupon == expected[row.tier] for row in rows)

    async with sessions.begin() as session:
        await mark_gift_shipped(session, RULES, ids["jan28"], 2027, " SF123 ", "mia", NOW)
    async with sessions.begin() as session:  # a corrected number replaces the first
        gift = await mark_gift_shipped(session, RULES, ids["jan28"], 2027, "SF456", "ben", NOW)
    assert (gift.status, gift.tracking_number, gift.updated_by) == (SHIPPED, "SF456", "ben")
    async with sessions() as session:
        rows = await birthdays_between(session, RULES, date(2027, 1, 28), date(2027, 1, 28))
        assert [(r.gift_status, r.tracking_number) for r in rows] == [(SHIPPED, "SF456")]
        # Next year's gift is still to ship.
        rows = await birthdays_between(session, RULES, date(2028, 1, 28), date(2028, 1, 28))
        assert [(r.gift_status, r.tracking_number) for r in rows] == [(PENDING, None)]

    for name, tracking, refusal in (
        ("feb03", "SF1", NoGiftDue),  # a silver member: coupon only
        ("nobirthday", "SF1", NoGiftDue),
        ("jan28", "   ", ValueError),
        ("jan28", "X" * 65, ValueError),
    ):
        async with sessions.begin() as session:
            with pytest.raises(refusal):
                await mark_gift_shipped(session, RULES, ids[name], 2027, tracking, "mia", NOW)


async def test_a_list_is_at_most_a_month(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="1 to 31 days"):
            await birthdays_between(session, RULES, date(2027, 1, 1), date(2027, 2, 1))
        with pytest.raises(ValueError, match="1 to 31 days"):
            await birthdays_between(session, RULES, date(2027, 1, 2), date(2027, 1, 1))
