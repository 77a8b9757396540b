"""The contract between the two implementations of a redemption: ``redeem_reward`` (the
PL/pgSQL function of migration 0025, what ``redeem`` runs on PostgreSQL) and
``_redeem_in_python`` (SQLite's path). Each scenario is built twice on PostgreSQL, with the ids
restarted, and redeemed once by each; the answers and every row of every table they touch
(members, ledger entries, lots, events, redemptions, coupons, items) must be the same. The
function is run both ways it is sent: in the caller's transaction through SQLAlchemy, and on its
own through asyncpg (``redeem_on_its_own``). A group of confirmations (``redeem_rewards``, the
chat's 确认 grouped per item) must write and answer what its members would alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models import Base
from models.coupons import Coupon
from models.events import MemberEvent
from models.ledger import KeyConflict, LedgerEntry, PointLot, credit
from models.members import Member
from models.redemption import (
    _redeem_in_database,
    _redeem_in_python,
    outcome_of,
    redeem_alone_in_database,
    redeem_reward_params,
)
from models.redemption_groups import _redeem_group
from models.rewards import (
    Redeemed,
    Redemption,
    Refusal,
    RewardItem,
    RewardSpec,
    new_item,
)
from models.rules import ProgrammeRules

RULES = ProgrammeRules()
NOW = datetime(2026, 12, 10, 4, tzinfo=UTC)
LATER = datetime(2028, 1, 1, tzinfo=UTC)
TABLES = (Member, LedgerEntry, PointLot, MemberEvent, Redemption, Coupon, RewardItem)
Lot = tuple[int, datetime, datetime]  # points, earned at, expires at


@dataclass(frozen=True)
class Scenario:
    """A member with ``lots`` (and ``tier``), an item of ``item`` fields, ``before``: keys the
    member redeemed the item with first (through ``redeem``), then the redemption compared."""

    lots: tuple[Lot, ...] = ((500, NOW - timedelta(days=5), LATER),)
    tier: str = "basic"
    item: dict[str, Any] = field(default_factory=dict)
    before: tuple[str, ...] = ()
    key: str = "k"
    other_item: bool = False  # redeem another item with the key (a key conflict)
    expected_points: int | None = None
    now: datetime = NOW


SCENARIOS = {
    "enough points": Scenario(),
    "short of points": Scenario(lots=((60, NOW, LATER),)),
    "not in the tier": Scenario(item={"tiers": ["gold"]}),
    "limit reached this month": Scenario(
        item={"limit_count": 1, "limit_period": "month"}, before=("k0",)
    ),
    "limit ever, one left": Scenario(item={"limit_count": 2}, before=("k0",)),
    "sold out": Scenario(item={"stock": 0}),
    "the last one": Scenario(item={"stock": 1}),
    "retired": Scenario(item={"status": "retired"}),
    "not open yet": Scenario(item={"valid_from": NOW + timedelta(days=1)}),
    "ended": Scenario(item={"valid_until": NOW}),
    "early access, not my tier": Scenario(
        item={"early_tiers": ["gold"], "opens_at": NOW + timedelta(hours=1)}
    ),
    "early access, my tier": Scenario(
        tier="gold", item={"early_tiers": ["gold"], "opens_at": NOW + timedelta(hours=1)}
    ),
    "price changed": Scenario(expected_points=90),
    "price as confirmed": Scenario(expected_points=100),
    "replay": Scenario(item={"stock": 5}, before=("k",)),
    "key conflict": Scenario(before=("k",), other_item=True),
    "due lots expire first": Scenario(
        lots=(
            (70, NOW - timedelta(days=400), NOW - timedelta(days=1)),
            (30, NOW - timedelta(days=300), NOW),
            (150, NOW - timedelta(days=10), LATER),
        )
    ),
    "short once the due lots expire": Scenario(
        lots=((70, NOW - timedelta(days=400), NOW), (50, NOW - timedelta(days=10), LATER))
    ),
    "coupon item": Scenario(item={"kind": "coupon", "coupon_kind": "full_300_50"}),
    "gift shipped, with cash": Scenario(item={"delivery": "ship", "cash_fen": 990}),
    "service": Scenario(item={"kind": "service"}),
    "multi-lot draw, oldest first": Scenario(
        lots=(
            (40, NOW - timedelta(days=3), LATER),
            (30, NOW - timedelta(days=20), LATER),
            (50, NOW - timedelta(days=9), LATER),
            (90, NOW - timedelta(days=1), LATER),
        )
    ),
    "unknown item": Scenario(item={"id": 10**9}),
}

Redeem = Callable[..., Awaitable[Redeemed | Refusal]]


@pytest.fixture
async def sessions(postgresql_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(postgresql_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


# Pickup and coupon codes drawn since the world was built: both paths draw the same ones, so
# their rows compare whole.
DRAWN: Counter[str] = Counter()


def code(prefix: str) -> str:
    DRAWN[prefix] += 1
    return f"{prefix}{DRAWN[prefix]:04d}"


@pytest.fixture(autouse=True)
def fixed_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.redemption._pickup_code", lambda: code("PICKUP"))
    monkeypatch.setattr("models.redemption.new_coupon_code", lambda: code("COUPON"))
    monkeypatch.setattr("models.coupons.new_coupon_code", lambda: code("COUPON"))


async def world(sessions: async_sessionmaker[AsyncSession], scenario: Scenario) -> tuple[int, int]:
    """The scenario's member and item on emptied tables whose ids start again at 1."""
    DRAWN.clear()
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with sessions.begin() as session:
        await session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    fields = {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100}
    fields |= {k: v for k, v in scenario.item.items() if k not in ("status", "id")}
    if fields["kind"] != "gift":
        fields["delivery"] = None
    async with sessions.begin() as session:
        member = Member(openid="o1", subscribed=True, created_at=NOW, tags=[], tier=scenario.tier)
        session.add(member)
        row = new_item(RewardSpec.model_validate(fields), NOW - timedelta(days=30))
        session.add(row)
        session.add(new_item(RewardSpec.model_validate(fields | {"name": "另一件"}), NOW))
        await session.flush()
        for n, (points, earned, expires) in enumerate(scenario.lots):
            await credit(
                session,
                member.id,
                points,
                kind="earn",
                reason="test",
                key=f"seed:{n}",
                at=earned,
                expires_at=expires,
            )
        member_id, item_id = member.id, scenario.item.get("id", row.id)
    for key in scenario.before:
        async with sessions.begin() as session:
            earlier = await _redeem_in_python(
                session, RULES, member_id, item_id, key=key, now=NOW - timedelta(days=1)
            )
            assert isinstance(earlier, Redeemed)
    if "status" in scenario.item:
        async with sessions.begin() as session:
            (await session.get_one(RewardItem, item_id)).status = scenario.item["status"]
    return member_id, item_id


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[tuple[Any, ...]]]:
    async with sessions() as session:
        return {
            model.__tablename__: [
                tuple(row)
                for row in await session.execute(
                    select(model.__table__).order_by(model.__table__.c.id)
                )
            ]
            for model in TABLES
        }


async def run(
    sessions: async_sessionmaker[AsyncSession], scenario: Scenario, implementation: Redeem
) -> tuple[Any, dict[str, list[tuple[Any, ...]]]]:
    """The answer (or the exception's type) and every row after the redemption."""
    member_id, item_id = await world(sessions, scenario)
    if scenario.other_item:
        item_id += 1
    try:
        async with sessions.begin() as session:
            answer: Any = await implementation(
                session,
                RULES,
                member_id,
                item_id,
                key=scenario.key,
                now=scenario.now,
                expected_points=scenario.expected_points,
            )
    except KeyConflict as conflict:
        answer = type(conflict)
    return answer, await rows(sessions)


async def in_database(session: AsyncSession, rules: ProgrammeRules, *args: Any, **kw: Any) -> Any:
    return await _redeem_in_database(
        session, rules, *args, kw["key"], kw["now"], kw["expected_points"]
    )


def alone(sessions: async_sessionmaker[AsyncSession]) -> Redeem:
    """The function sent by asyncpg in autocommit (``redeem_on_its_own``, the chat's 确认),
    outside the caller's session."""

    async def call(_session: AsyncSession, rules: ProgrammeRules, *args: Any, **kw: Any) -> Any:
        return await redeem_alone_in_database(
            sessions, rules, *args, kw["key"], kw["now"], kw["expected_points"]
        )

    return call


@pytest.mark.parametrize("way", ["in_transaction", "alone"])
@pytest.mark.parametrize("name", SCENARIOS)
async def test_the_function_and_the_python_path_write_the_same(
    sessions: async_sessionmaker[AsyncSession], name: str, way: str
) -> None:
    scenario = SCENARIOS[name]
    python_answer, python_rows = await run(sessions, scenario, _redeem_in_python)
    function = in_database if way == "in_transaction" else alone(sessions)
    function_answer, function_rows = await run(sessions, scenario, function)
    assert function_answer == python_answer
    for table, expected in python_rows.items():
        assert function_rows[table] == expected, table


async def test_the_scenarios_cover_every_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The table above reaches what it claims: each kind of answer at least once."""
    answers = set()
    for scenario in SCENARIOS.values():
        answer, _ = await run(sessions, scenario, in_database)
        if isinstance(answer, Refusal):
            answers.add(answer.reason)
        elif isinstance(answer, Redeemed):
            answers.add("replayed" if answer.replayed else f"redeemed:{answer.status}")
        else:
            answers.add(answer.__name__)
    assert answers == {
        "redeemed:pending",
        "redeemed:issued",
        "replayed",
        "KeyConflict",
        "not_enough_points",
        "not_in_tier",
        "limit_reached",
        "sold_out",
        "retired",
        "not_open_yet",
        "ended",
        "price_changed",
        "unknown",
    }


# A group of confirmations of one item: (member, key) in the order they came; the members are
# 1 (rich), 2 (short of points), 3 and 4 (rich), and the item has two left.
GROUP = ((1, "a"), (2, "b"), (1, "a"), (3, "c"), (4, "d"), (1, "e"))


async def group_world(sessions: async_sessionmaker[AsyncSession]) -> int:
    """GROUP's members (ids 1 to 4) and item (id 1) on emptied tables."""
    await world(sessions, Scenario(item={"stock": 2}))  # member 1 and the item
    for n, points in ((2, 60), (3, 500), (4, 500)):
        async with sessions.begin() as session:
            member = Member(openid=f"o{n}", subscribed=True, created_at=NOW, tags=[])
            session.add(member)
            await session.flush()
            await credit(
                session,
                member.id,
                points,
                kind="earn",
                reason="test",
                key=f"seed:{n}",
                at=NOW - timedelta(days=5),
                expires_at=LATER,
            )
    return 1


async def test_a_group_writes_and_answers_what_its_members_would_one_after_another(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """``redeem_rewards`` (the chat's confirmations of one item, grouped) against the same
    confirmations sent alone in their order: a redemption, a member short of points, a replay
    within the group, the last one, then sold out twice (the first member under a new key)."""
    item_id = await group_world(sessions)
    alone_answers = [
        await redeem_alone_in_database(sessions, RULES, member, item_id, key, NOW, None)
        for member, key in GROUP
    ]
    alone_rows = await rows(sessions)

    await group_world(sessions)
    params = [redeem_reward_params(RULES, m, item_id, key, NOW, None) for m, key in GROUP]
    grouped = await _redeem_group(sessions, item_id, params)
    group_answers = [
        outcome_of(row, member, key) for row, (member, key) in zip(grouped, GROUP, strict=True)
    ]
    assert [type(a).__name__ for a in alone_answers] == [
        "Redeemed", "Refusal", "Redeemed", "Redeemed", "Refusal", "Refusal",
    ]  # fmt: skip
    assert group_answers == alone_answers
    for table, expected in alone_rows.items():
        assert (await rows(sessions))[table] == expected, table
