"""The audience compiler: every filter, AND/OR, the empty audience, and bad definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models.audience import Audience, member_ids, preview
from models.deliveries import Delivery
from models.members import Member
from models.orders import Order

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
MONTH_START = datetime(2026, 11, 1, tzinfo=ZONE)

# name: tier, segment, tags, birthday, points, subscribed_at, last order, following
MEMBERS: dict[str, tuple[Any, ...]] = {
    "ann": (
        "gold",
        "core",
        ["vip", "beauty"],
        date(1990, 3, 8),
        5000,
        "2024-01-10",
        "2026-11-01",
        True,
    ),
    "bob": ("basic", "dormant", [], date(1985, 11, 2), 0, "2025-06-01", "2026-03-01", True),
    "cat": ("silver", "potential", ["beauty"], None, 800, "2026-10-01", None, True),
    "dan": (
        "diamond",
        "important",
        ["vip"],
        date(2000, 3, 30),
        12000,
        "2023-05-05",
        "2026-06-15",
        True,
    ),
    "eve": ("gold", "core", ["vip"], date(1995, 7, 1), 3000, "2024-02-02", "2026-11-10", False),
}


@pytest.fixture
async def sessions(db_url: str) -> Any:
    engine = create_engine(db_url)
    factory = create_sessionmaker(engine)
    ids: dict[str, int] = {}
    async with factory.begin() as session:
        for name, (
            tier,
            segment,
            tags,
            birthday,
            points,
            since,
            last,
            following,
        ) in MEMBERS.items():
            member = Member(
                openid=f"o_aud_{name}_000000",
                name=name,
                tier=tier,
                segment=segment,
                tags=tags,
                birthday=birthday,
                points_balance=points,
                subscribed=following,
                subscribed_at=datetime.combine(
                    date.fromisoformat(since), datetime.min.time(), ZONE
                ),
                created_at=NOW,
            )
            session.add(member)
            await session.flush()
            ids[name] = member.id
            if last:
                paid = datetime.combine(date.fromisoformat(last), datetime.min.time(), ZONE)
                session.add(
                    Order(
                        shop_order_id=f"AUD-{name}",
                        member_id=member.id,
                        amount_fen=10_000,
                        paid_at=paid,
                        channel="pos",
                        points_earned=0,
                        fingerprint="x",
                        created_at=paid,
                    )
                )
    yield factory, ids
    await engine.dispose()


async def names(
    factory: async_sessionmaker[AsyncSession], ids: dict[str, int], root: Any
) -> list[str]:
    audience = Audience.model_validate({"root": root})
    by_id = {v: k for k, v in ids.items()}
    found: list[str] = []
    async with factory() as session:
        async for batch in member_ids(session, audience, ZONE):
            found += [by_id[i] for i in batch]
    return sorted(found)


def c(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        (None, ["ann", "bob", "cat", "dan"]),  # every follower; eve unfollowed
        ({"all": [c("tier", "in", ["gold", "diamond"])]}, ["ann", "dan"]),
        ({"all": [c("segment", "in", ["dormant", "potential"])]}, ["bob", "cat"]),
        ({"all": [c("tag", "has_any", ["vip"])]}, ["ann", "dan"]),
        ({"all": [c("tag", "has_any", ["beauty", "nothing"])]}, ["ann", "cat"]),
        ({"all": [c("birthday_month", "in", [3])]}, ["ann", "dan"]),
        ({"all": [c("points", "gte", 5000)]}, ["ann", "dan"]),
        ({"all": [c("points", "lte", 800)]}, ["bob", "cat"]),
        ({"all": [c("last_purchase", "after", "2026-06-15")]}, ["ann", "dan"]),
        # Bought, but not since: cat never bought and is not "before".
        ({"all": [c("last_purchase", "before", "2026-06-15")]}, ["bob"]),
        ({"all": [c("subscribed_since", "after", "2025-06-01")]}, ["bob", "cat"]),
        ({"all": [c("subscribed_since", "before", "2024-01-10")]}, ["dan"]),
        (
            {"all": [c("tag", "has_any", ["vip"]), c("birthday_month", "in", [3])]},
            ["ann", "dan"],
        ),
        (
            {"any": [c("tier", "in", ["basic"]), c("points", "gte", 10_000)]},
            ["bob", "dan"],
        ),
        (
            {
                "all": [
                    c("tag", "has_any", ["vip", "beauty"]),
                    {"any": [c("segment", "in", ["potential"]), c("points", "gte", 10_000)]},
                ]
            },
            ["cat", "dan"],
        ),
        ({"all": [c("tier", "in", ["gold"]), c("tier", "in", ["basic"])]}, []),  # empty
    ],
)
async def test_filters(sessions: Any, root: Any, expected: list[str]) -> None:
    factory, ids = sessions
    assert await names(factory, ids, root) == expected


async def test_preview_counts_the_mass_allowance_left(sessions: Any) -> None:
    factory, ids = sessions
    async with factory.begin() as session:
        for n in range(4):
            session.add(
                Delivery(
                    dedupe_key=f"mass:{n}",
                    purpose="campaign",
                    category="marketing",
                    member_id=ids["ann"],
                    payload={},
                    status="sent",
                    channel="mass",
                    attempts=1,
                    not_before=NOW,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    audience = Audience.model_validate({"root": {"all": [c("tag", "has_any", ["vip"])]}})
    async with factory() as session:
        shown = await preview(session, audience, ZONE, MONTH_START, mass_per_month=4)
    assert (shown.count, shown.with_mass_allowance) == (2, 1)
    assert [m["name"] for m in shown.sample] == ["ann", "dan"]


@pytest.mark.parametrize(
    "root",
    [
        {"all": []},
        {"all": [c("tier", "in", ["gold"])], "any": [c("tier", "in", ["gold"])]},
        {"all": [c("tier", "gte", 3)]},
        {"all": [c("points", "gte", "many")]},
        {"all": [c("birthday_month", "in", [13])]},
        {"all": [c("last_purchase", "after", "yesterday")]},
        {"all": [c("colour", "in", ["red"])]},
        {"all": [c("tier", "in", ["gold"]) | {"extra": 1}]},
        {"all": [{"all": [{"all": [{"all": [{"all": [c("tier", "in", ["gold"])]}]}]}]}]},
    ],
)
def test_bad_definitions_are_refused(root: Any) -> None:
    with pytest.raises(ValidationError):
        Audience.model_validate({"root": root})


# name: tier, segment, tags, orders as (category, channel, yuan, days ago, refunded in full)
BUYERS: dict[str, tuple[str, str, list[str], list[tuple[str | None, str, int, int, bool]]]] = {
    "amy": (
        "gold",
        "core",
        ["vip"],
        [("彩妆", "pos", 300, 20, False), ("护肤", "pos", 200, 40, False)],
    ),
    "ben": ("basic", "at_risk", [], [("彩妆", "mall", 120, 250, False)]),  # too long ago for 6
    "cid": ("silver", "potential", ["vip"], [("彩妆", "mall", 900, 10, True)]),  # refunded
    "deb": ("gold", "important", [], [("护肤", "mall", 80, 5, False)] * 3),
    "fay": ("basic", "dormant", [], []),
}


@pytest.fixture
async def buyers(db_url: str) -> Any:
    """Members with orders relative to now (purchase windows end now)."""
    engine = create_engine(db_url)
    factory = create_sessionmaker(engine)
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    async with factory.begin() as session:
        for name, (tier, segment, tags, orders) in BUYERS.items():
            member = Member(
                openid=f"o_buy_{name}_000000",
                name=name,
                tier=tier,
                segment=segment,
                tags=tags,
                subscribed=True,
                created_at=now,
            )
            session.add(member)
            await session.flush()
            ids[name] = member.id
            for n, (category, channel, yuan, days, refunded) in enumerate(orders):
                paid = now - timedelta(days=days)
                session.add(
                    Order(
                        shop_order_id=f"BUY-{name}-{n}",
                        member_id=member.id,
                        amount_fen=yuan * 100,
                        refunded_fen=yuan * 100 if refunded else 0,
                        paid_at=paid,
                        channel=channel,
                        category=category,
                        points_earned=0,
                        fingerprint="x",
                        created_at=paid,
                    )
                )
    yield factory, ids
    await engine.dispose()


def p(field: str, op: str, value: Any, months: int = 6) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, "months": months}


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        # 近6个月买过彩妆: ben bought too long ago, cid's order was refunded in full.
        ({"all": [p("bought_category", "in", ["彩妆"])]}, ["amy"]),
        ({"all": [p("bought_category", "in", ["彩妆"], 12)]}, ["amy", "ben"]),
        ({"all": [p("bought_category", "in", ["彩妆", "护肤"])]}, ["amy", "deb"]),
        ({"all": [p("bought_channel", "in", ["mall"])]}, ["deb"]),
        ({"all": [p("order_count", "gte", 2)]}, ["amy", "deb"]),
        ({"all": [p("order_count", "gte", 3)]}, ["deb"]),
        # At most 1 order: members with none in the window count too.
        ({"all": [p("order_count", "lte", 1)]}, ["ben", "cid", "fay"]),
        ({"all": [p("order_count", "gte", 0)]}, ["amy", "ben", "cid", "deb", "fay"]),
        ({"all": [p("spend", "gte", 40_000)]}, ["amy"]),  # ¥400 or more, net of refunds
        ({"all": [p("spend", "gte", 20_000), p("spend", "lte", 60_000)]}, ["amy", "deb"]),
        ({"all": [p("spend", "lte", 30_000)]}, ["ben", "cid", "deb", "fay"]),
        # Combined with the member filters.
        (
            {"all": [p("bought_category", "in", ["彩妆", "护肤"]), c("tier", "in", ["gold"])]},
            ["amy", "deb"],
        ),
        (
            {"all": [p("bought_category", "in", ["彩妆"], 12), c("segment", "in", ["at_risk"])]},
            ["ben"],
        ),
        (
            {"any": [p("bought_channel", "in", ["mall"]), c("tag", "has_any", ["vip"])]},
            ["amy", "cid", "deb"],
        ),
    ],
)
async def test_purchase_filters(buyers: Any, root: Any, expected: list[str]) -> None:
    factory, ids = buyers
    assert await names(factory, ids, root) == expected


async def test_the_preview_counts_a_purchase_audience(buyers: Any) -> None:
    factory, _ = buyers
    audience = Audience.model_validate({"root": {"all": [p("bought_category", "in", ["彩妆"])]}})
    async with factory() as session:
        shown = await preview(session, audience, ZONE, MONTH_START, mass_per_month=4)
    assert shown.count == 1


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "bought_category", "op": "in", "value": ["彩妆"]},  # no months
        p("bought_category", "in", ["彩妆"], 0),
        p("bought_category", "in", ["彩妆"], 37),
        p("bought_category", "gte", 3),
        p("order_count", "in", [1]),
        p("order_count", "gte", -1),
        p("spend", "gte", "lots"),
        p("bought_channel", "in", ["x" * 65]),
        c("tier", "in", ["gold"]) | {"months": 6},  # months only on purchase conditions
    ],
)
def test_bad_purchase_conditions_are_refused(condition: Any) -> None:
    with pytest.raises(ValidationError):
        Audience.model_validate({"root": {"all": [condition]}})
