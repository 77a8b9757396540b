"""The tier re-evaluation and segment refresh jobs: every rule at its threshold and either side."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import models.tier_review
from models.base import utcnow
from models.benefits.upgrade import upgrade_gifts
from models.events import MemberEvent
from models.ledger import verify_ledger
from models.members import Member
from models.order_posting import record_order
from models.orders import FUTURE_TOLERANCE, Order, OrderIn
from models.rules import DEFAULT_TIERS, ProgrammeRules, SegmentRules
from models.segments import SEGMENTS, refresh_segments
from models.state import get_state
from models.tier_review import TierReview, reevaluate_tiers
from models.tiers import (
    TOP_SPEND_THRESHOLD,
    TierChange,
    member_stats,
    tier_standing,
    window_start,
)

NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
LONG_AGO = NOW - timedelta(days=800)
RULES = ProgrammeRules()
# The default tiers without the top-spender rule, so a lone member is judged on orders and spend.
NO_TOP = ProgrammeRules(
    tiers=[t.model_copy(update={"top_spend_percent": None}) for t in DEFAULT_TIERS]
)
SEG = SegmentRules()

_serial = itertools.count()

# (paid_at, amount_fen, refunded_fen)
Purchase = tuple[datetime, int, int]


def repeat(count: int, amount_fen: int = 1, at: datetime = NOW - DAY) -> list[Purchase]:
    """``count`` purchases of ``amount_fen`` a minute apart, the latest at ``at``."""
    return [(at - i * timedelta(minutes=1), amount_fen, 0) for i in range(count)]


async def add_member(
    session: AsyncSession,
    purchases: Sequence[Purchase] = (),
    *,
    tier: str = "basic",
    created_at: datetime = LONG_AGO,
) -> int:
    member = Member(
        openid=f"openid-{next(_serial)}",
        subscribed=True,
        tier=tier,
        tier_since=LONG_AGO,
        created_at=created_at,
    )
    session.add(member)
    await session.flush()
    for paid_at, amount_fen, refunded_fen in purchases:
        session.add(
            Order(
                shop_order_id=f"order-{next(_serial)}",
                member_id=member.id,
                amount_fen=amount_fen,
                refunded_fen=refunded_fen,
                paid_at=paid_at,
                channel="pos",
                points_earned=0,
                points_reversed=0,
                fingerprint="x",
                created_at=paid_at,
            )
        )
    await session.flush()
    return member.id


async def tiers_of(sessions: async_sessionmaker[AsyncSession]) -> dict[int, str]:
    async with sessions() as session:
        return dict((await session.execute(select(Member.id, Member.tier))).all())


WINDOW_START = window_start(RULES, NOW)

TIER_CASES = [
    pytest.param(repeat(3), "basic", id="orders-3-below-silver"),
    pytest.param(repeat(4), "silver", id="orders-4-silver"),
    pytest.param(repeat(5), "silver", id="orders-5-above-silver"),
    pytest.param(repeat(6), "silver", id="orders-6-below-gold"),
    pytest.param(repeat(7), "gold", id="orders-7-gold"),
    pytest.param(repeat(8), "gold", id="orders-8-above-gold"),
    pytest.param(repeat(10), "gold", id="orders-10-below-diamond"),
    pytest.param(repeat(11), "diamond", id="orders-11-diamond"),
    pytest.param(repeat(12), "diamond", id="orders-12-above-diamond"),
    pytest.param(repeat(1, 199_999), "basic", id="spend-below-silver"),
    pytest.param(repeat(1, 200_000), "silver", id="spend-silver"),
    pytest.param(repeat(1, 200_001), "silver", id="spend-above-silver"),
    pytest.param(repeat(1, 499_999), "silver", id="spend-below-gold"),
    pytest.param(repeat(1, 500_000), "gold", id="spend-gold"),
    pytest.param(repeat(1, 500_001), "gold", id="spend-above-gold"),
    pytest.param(repeat(1, 10**9), "gold", id="spend-never-reaches-diamond"),
    pytest.param([(NOW - DAY, 200_100, 100)], "silver", id="spend-net-of-refund-at-silver"),
    pytest.param([(NOW - DAY, 200_100, 101)], "basic", id="spend-net-of-refund-below-silver"),
    pytest.param([*repeat(3), (NOW - DAY, 500, 500)], "basic", id="refunded-order-not-counted"),
    pytest.param([*repeat(3), (WINDOW_START, 1, 0)], "basic", id="window-start-excluded"),
    pytest.param([*repeat(3), (WINDOW_START + SECOND, 1, 0)], "silver", id="window-start-1s"),
    pytest.param([*repeat(3), (NOW, 1, 0)], "silver", id="window-end-included"),
    # An order stamped ahead, within the tolerance, was accepted before the run: it counts.
    pytest.param([*repeat(3), (NOW + FUTURE_TOLERANCE, 1, 0)], "silver", id="ahead-included"),
    pytest.param(
        [*repeat(3), (NOW + FUTURE_TOLERANCE + SECOND, 1, 0)], "basic", id="future-excluded"
    ),
]


@pytest.mark.parametrize(("purchases", "expected"), TIER_CASES)
async def test_tier_orders_and_spend_boundaries(
    sessions: async_sessionmaker[AsyncSession], purchases: list[Purchase], expected: str
) -> None:
    async with sessions() as session:
        member_id = await add_member(session, purchases)
        await session.commit()
        # Decided at the run's time, as an on-time run over a quiet moment is.
        await reevaluate_tiers(session, NO_TOP, NOW, clock=lambda: NOW)
    assert (await tiers_of(sessions))[member_id] == expected


def thousands(count: int) -> list[int]:
    return [1_000 * i for i in range(1, count + 1)]


# Top 10%: the threshold is the spend at rank ceil(n / 10) from the top.
TOP_CASES = [
    pytest.param([], None, id="no-spenders"),
    pytest.param(thousands(10), 10_000, id="10-spenders-rank-1"),
    pytest.param(thousands(11), 10_000, id="11-spenders-rank-2"),
    pytest.param(thousands(19), 18_000, id="19-spenders-rank-2"),
    pytest.param(thousands(20), 19_000, id="20-spenders-rank-2"),
    pytest.param(thousands(21), 19_000, id="21-spenders-rank-3"),
    pytest.param([5_000] * 3 + [1_000] * 17, 5_000, id="ties-at-threshold-all-qualify"),
]


@pytest.mark.parametrize(("spends", "threshold"), TOP_CASES)
async def test_top_spender_threshold_and_tier(
    sessions: async_sessionmaker[AsyncSession], spends: list[int], threshold: int | None
) -> None:
    async with sessions() as session:
        spenders = {await add_member(session, repeat(1, spend)): spend for spend in spends}
        idle = await add_member(session)
        refunded = await add_member(session, [(NOW - DAY, 900, 900)])
        await session.commit()
        review = await reevaluate_tiers(session, RULES, NOW)
        assert review.top_spend_threshold_fen == threshold
        # Stored for on-order upgrades, which read it through the same key.
        assert await get_state(session, TOP_SPEND_THRESHOLD) == threshold
    tiers = await tiers_of(sessions)
    for member_id, spend in spenders.items():
        expected = "diamond" if threshold is not None and spend >= threshold else "basic"
        assert tiers[member_id] == expected, spend
    assert tiers[idle] == tiers[refunded] == "basic"


async def rows(sessions: async_sessionmaker[AsyncSession]) -> tuple[list[tuple], list[tuple]]:
    async with sessions() as session:
        changes = (
            await session.execute(
                select(
                    TierChange.member_id,
                    TierChange.from_tier,
                    TierChange.to_tier,
                    TierChange.reason,
                    TierChange.created_at,
                ).order_by(TierChange.member_id)
            )
        ).all()
        events = (
            await session.execute(
                select(
                    MemberEvent.member_id,
                    MemberEvent.kind,
                    MemberEvent.payload,
                    MemberEvent.created_at,
                ).order_by(MemberEvent.member_id)
            )
        ).all()
    return [tuple(r) for r in changes], [tuple(r) for r in events]


async def test_reevaluation_moves_tiers_both_ways_logs_changes_only_and_is_idempotent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        up = await add_member(session, repeat(7), tier="basic")
        gold_lapsed = await add_member(session, [(WINDOW_START, 900_000, 0)], tier="gold")
        stays = await add_member(session, repeat(4), tier="silver")
        down = await add_member(session, repeat(5), tier="diamond")
        never = await add_member(session)
        await session.commit()
        # Batches of two: the five members span three transactions.
        review = await reevaluate_tiers(session, NO_TOP, NOW, batch=2)
    assert review == TierReview(
        evaluated=5, upgraded=1, downgraded=2, unchanged=2, top_spend_threshold_fen=None
    )
    assert await tiers_of(sessions) == {
        up: "gold",
        gold_lapsed: "basic",
        stays: "silver",
        down: "silver",
        never: "basic",
    }
    changes, events = await rows(sessions)
    assert changes == [
        (up, "basic", "gold", "reevaluation", NOW),
        (gold_lapsed, "gold", "basic", "reevaluation", NOW),
        (down, "diamond", "silver", "reevaluation", NOW),
    ]
    assert events == [
        (up, "tier_upgraded", {"from": "basic", "to": "gold", "levels": 2}, NOW),
        (gold_lapsed, "tier_downgraded", {"from": "gold", "to": "basic", "levels": 2}, NOW),
        (down, "tier_downgraded", {"from": "diamond", "to": "silver", "levels": 2}, NOW),
    ]
    async with sessions() as session:
        since = dict((await session.execute(select(Member.id, Member.tier_since))).all())
    assert since == {up: NOW, gold_lapsed: NOW, stays: LONG_AGO, down: NOW, never: LONG_AGO}

    async with sessions() as session:
        again = await reevaluate_tiers(session, NO_TOP, NOW, batch=2)
    assert again == TierReview(
        evaluated=5, upgraded=0, downgraded=0, unchanged=5, top_spend_threshold_fen=None
    )
    assert await rows(sessions) == (changes, events)
    async with sessions() as session:
        assert dict((await session.execute(select(Member.id, Member.tier_since))).all()) == since


async def test_orders_during_the_run_are_not_undone_by_it(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orders that land (with their upgrades) between the run's first and later batches."""
    started = utcnow() - SECOND  # the run's scheduled time, a moment ago
    recent = started - DAY
    async with sessions.begin() as session:
        first = await add_member(session)  # the first batch, before any order lands
        lifted = await add_member(session, repeat(3, at=recent))  # the 4th order: silver
        kept = await add_member(session, repeat(6, at=recent), tier="gold")  # the 7th: gold
        lapsed = await add_member(session, repeat(5, at=recent), tier="gold")  # no order: silver
    first_done, orders_done = asyncio.Event(), asyncio.Event()
    review_batch = models.tier_review._review_batch

    async def review_then_wait(session: AsyncSession, *args: object) -> tuple[int, int, int]:
        counts = await review_batch(session, *args)  # type: ignore[arg-type]
        if not first_done.is_set():
            first_done.set()
            await orders_done.wait()
        return counts

    monkeypatch.setattr(models.tier_review, "_review_batch", review_then_wait)

    async def review() -> TierReview:
        async with sessions() as session:
            return await reevaluate_tiers(session, NO_TOP, started, batch=1)

    async def buy() -> list[str | None]:
        await first_done.wait()
        upgrades = []
        for n, member_id in enumerate((lifted, kept)):
            async with sessions.begin() as session:
                member = await session.get_one(Member, member_id, with_for_update=True)
                now = utcnow()
                data = OrderIn(f"during-run-{n}", member_id, 100, now, "pos")
                outcome = await record_order(session, NO_TOP, member, data, now)
                upgrades.append(outcome.upgrade.to_tier if outcome.upgrade else None)
        orders_done.set()
        return upgrades

    review_task = asyncio.ensure_future(review())
    try:
        upgrades = await buy()
        outcome = await review_task
    finally:
        orders_done.set()
        await asyncio.gather(review_task, return_exceptions=True)
    assert upgrades == ["silver", None]  # the gold member's order keeps gold on its own
    assert (outcome.evaluated, outcome.upgraded, outcome.downgraded) == (4, 0, 1)
    tiers = await tiers_of(sessions)
    assert [tiers[m] for m in (first, lifted, kept, lapsed)] == [
        "basic",
        "silver",
        "gold",
        "silver",
    ]


async def test_an_upgrade_by_the_review_brings_what_an_orders_upgrade_brings(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A member the review lifts gets the tier's upgrade gift (and the growth reward for a
    jump of two tiers), told in the upgrade's event as an order's upgrade tells it; a
    downgrade brings nothing, and a second review gives nothing again."""
    async with sessions() as session:
        silver = await add_member(session, repeat(4))
        gold = await add_member(session, repeat(1, 500_000))
        lapsed = await add_member(session, tier="silver")
        await session.commit()
        gifts = upgrade_gifts(session, NO_TOP, NOW)
        review = await reevaluate_tiers(session, NO_TOP, NOW, clock=lambda: NOW, gifts=gifts)
        again = await reevaluate_tiers(session, NO_TOP, NOW, clock=lambda: NOW, gifts=gifts)
    assert (review.upgraded, review.downgraded) == (2, 1)
    assert (again.upgraded, again.downgraded) == (0, 0)
    async with sessions() as session:
        assert [m async for m in verify_ledger(session)] == []
        balances = dict((await session.execute(select(Member.id, Member.points_balance))).all())
        events = {
            member_id: payload
            for member_id, payload in await session.execute(
                select(MemberEvent.member_id, MemberEvent.payload).where(
                    MemberEvent.kind.in_(["tier_upgraded", "tier_downgraded"])
                )
            )
        }
    # The shipped gifts: silver 200 points, gold 500, two tiers at once 1,000 more.
    assert balances == {silver: 200, gold: 1_500, lapsed: 0}
    assert [g["points"] for g in events[silver]["gifts"]] == [200]
    assert sorted(g["points"] for g in events[gold]["gifts"]) == [500, 1_000]
    assert events[gold]["levels"] == 2
    assert "gifts" not in events[lapsed]


async def test_reevaluation_with_no_members_stores_no_threshold(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        review = await reevaluate_tiers(session, RULES, NOW)
        assert await get_state(session, TOP_SPEND_THRESHOLD) is None
    assert review == TierReview(0, 0, 0, 0, None)


@dataclass(frozen=True)
class Buyer:
    """A member's purchase history for the segment rules."""

    orders_12m: int = 0
    # Net spend of those purchases (at least 1 fen each): the latest takes the remainder.
    spend_12m: int = 0
    # How long ago the latest of them was.
    last_ago: timedelta = DAY
    # Purchases of 1 fen more than 12 months ago (lifetime count only).
    orders_before: int = 0
    # Purchases of 1 fen dated after now (ignored: not paid yet as of the refresh).
    orders_after: int = 0
    created_ago: timedelta = NOW - LONG_AGO

    def purchases(self) -> list[Purchase]:
        recent = [
            (NOW - self.last_ago - i * timedelta(minutes=1), 1, 0)
            for i in range(1, self.orders_12m)
        ]
        if self.orders_12m:
            recent.append((NOW - self.last_ago, self.spend_12m - (self.orders_12m - 1), 0))
        old = NOW - relativedelta(months=13)
        older = [(old - i * timedelta(minutes=1), 1, 0) for i in range(self.orders_before)]
        later = [(NOW + i * timedelta(minutes=1), 1, 0) for i in range(1, self.orders_after + 1)]
        return recent + older + later


CORE = Buyer(
    orders_12m=SEG.core_min_orders_12m,
    spend_12m=SEG.core_min_spend_fen,
    last_ago=timedelta(days=SEG.core_recent_days),
)
IMPORTANT = Buyer(
    orders_12m=SEG.important_min_orders_12m,
    spend_12m=SEG.important_min_spend_fen,
    last_ago=timedelta(days=SEG.important_recent_days),
)
AT_RISK = Buyer(
    orders_12m=SEG.at_risk_min_orders,
    spend_12m=SEG.at_risk_min_orders,
    last_ago=timedelta(days=SEG.at_risk_idle_days) + SECOND,
)
DORMANT = Buyer(orders_12m=1, spend_12m=1, last_ago=timedelta(days=SEG.dormant_idle_days) + SECOND)
POTENTIAL = Buyer(
    orders_12m=SEG.potential_min_orders,
    spend_12m=SEG.potential_max_spend_fen,
    created_ago=timedelta(days=SEG.potential_registered_days) - SECOND,
)


SEGMENT_CASES = [
    pytest.param(CORE, "core", id="core-at-every-threshold"),
    pytest.param(replace(CORE, last_ago=CORE.last_ago - SECOND), "core", id="core-recent-inside"),
    pytest.param(replace(CORE, last_ago=CORE.last_ago + SECOND), "important", id="core-recent-out"),
    pytest.param(
        replace(CORE, orders_12m=SEG.core_min_orders_12m - 1), "important", id="core-orders-below"
    ),
    pytest.param(
        replace(CORE, orders_12m=SEG.core_min_orders_12m + 1), "core", id="core-orders-above"
    ),
    pytest.param(
        replace(CORE, orders_12m=SEG.core_min_orders_12m - 1, orders_before=1),
        "important",
        id="core-orders-older-than-12m-not-counted",
    ),
    pytest.param(
        replace(CORE, spend_12m=SEG.core_min_spend_fen - 1), "important", id="core-spend-below"
    ),
    pytest.param(
        replace(CORE, spend_12m=SEG.core_min_spend_fen + 1), "core", id="core-spend-above"
    ),
    pytest.param(IMPORTANT, "important", id="important-at-every-threshold"),
    pytest.param(
        replace(IMPORTANT, last_ago=IMPORTANT.last_ago - SECOND), "important", id="important-inside"
    ),
    pytest.param(
        replace(IMPORTANT, last_ago=IMPORTANT.last_ago + SECOND),
        "at_risk",
        id="important-recent-out-so-at-risk",
    ),
    pytest.param(
        replace(IMPORTANT, orders_12m=SEG.important_min_orders_12m - 1),
        "other",
        id="important-orders-below",
    ),
    pytest.param(
        replace(IMPORTANT, orders_12m=SEG.important_min_orders_12m + 1),
        "important",
        id="important-orders-above",
    ),
    pytest.param(
        replace(IMPORTANT, spend_12m=SEG.important_min_spend_fen - 1),
        "other",
        id="important-spend-below",
    ),
    pytest.param(
        replace(IMPORTANT, spend_12m=SEG.important_min_spend_fen + 1),
        "important",
        id="important-spend-above",
    ),
    pytest.param(AT_RISK, "at_risk", id="at-risk-just-idle"),
    pytest.param(
        replace(AT_RISK, last_ago=AT_RISK.last_ago - SECOND), "other", id="at-risk-idle-at"
    ),
    pytest.param(
        replace(AT_RISK, last_ago=AT_RISK.last_ago - 2 * SECOND), "other", id="at-risk-idle-inside"
    ),
    pytest.param(
        replace(AT_RISK, orders_12m=SEG.at_risk_min_orders - 1, spend_12m=2),
        "other",
        id="at-risk-orders-below",
    ),
    pytest.param(
        replace(AT_RISK, orders_12m=SEG.at_risk_min_orders + 1, spend_12m=4),
        "at_risk",
        id="at-risk-orders-above",
    ),
    pytest.param(
        replace(AT_RISK, orders_12m=1, spend_12m=1, orders_before=SEG.at_risk_min_orders - 1),
        "at_risk",
        id="at-risk-counts-lifetime-orders",
    ),
    pytest.param(DORMANT, "dormant", id="dormant-just-idle"),
    pytest.param(replace(DORMANT, orders_after=1), "dormant", id="dormant-future-order-ignored"),
    pytest.param(
        replace(DORMANT, last_ago=DORMANT.last_ago - SECOND), "other", id="dormant-idle-at"
    ),
    pytest.param(
        replace(DORMANT, last_ago=DORMANT.last_ago - 2 * SECOND), "other", id="dormant-idle-inside"
    ),
    pytest.param(replace(DORMANT, orders_12m=0), "other", id="dormant-never-bought"),
    pytest.param(
        replace(DORMANT, orders_12m=SEG.dormant_max_orders + 1, spend_12m=2),
        "other",
        id="dormant-orders-above",
    ),
    pytest.param(
        replace(DORMANT, orders_12m=0, orders_before=1), "dormant", id="dormant-only-order-long-ago"
    ),
    pytest.param(POTENTIAL, "potential", id="potential-at-every-threshold"),
    pytest.param(
        replace(POTENTIAL, created_ago=POTENTIAL.created_ago + SECOND),
        "other",
        id="potential-registered-at",
    ),
    pytest.param(
        replace(POTENTIAL, created_ago=POTENTIAL.created_ago + 2 * SECOND),
        "other",
        id="potential-registered-before",
    ),
    pytest.param(
        replace(POTENTIAL, orders_12m=SEG.potential_min_orders - 1),
        "other",
        id="potential-orders-below",
    ),
    pytest.param(
        replace(POTENTIAL, orders_12m=SEG.potential_min_orders + 1),
        "potential",
        id="potential-orders-above",
    ),
    pytest.param(
        replace(POTENTIAL, spend_12m=SEG.potential_max_spend_fen - 1),
        "potential",
        id="potential-spend-below",
    ),
    pytest.param(
        replace(POTENTIAL, spend_12m=SEG.potential_max_spend_fen + 1),
        "other",
        id="potential-spend-above",
    ),
    pytest.param(Buyer(), "other", id="never-bought-long-ago"),
    pytest.param(Buyer(created_ago=DAY), "other", id="never-bought-new"),
]


@pytest.mark.parametrize(("buyer", "expected"), SEGMENT_CASES)
async def test_segment_boundaries(
    sessions: async_sessionmaker[AsyncSession], buyer: Buyer, expected: str
) -> None:
    async with sessions() as session:
        await add_member(session, buyer.purchases(), created_at=NOW - buyer.created_ago)
        await session.commit()
        counts = await refresh_segments(session, RULES, NOW)
    assert counts == {code: int(code == expected) for code in SEGMENTS}
    async with sessions() as session:
        member = await session.scalar(select(Member))
    assert member is not None
    assert (member.segment, member.segment_at) == (expected, NOW)


async def test_segments_refresh_every_member_in_batches_and_rerun_is_stable(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    buyers = [CORE, IMPORTANT, AT_RISK, DORMANT, POTENTIAL, Buyer(), CORE]
    async with sessions() as session:
        for buyer in buyers:
            await add_member(session, buyer.purchases(), created_at=NOW - buyer.created_ago)
        await session.commit()
        # Batches of three: the seven members span three transactions.
        first = await refresh_segments(session, RULES, NOW, batch=3)
        second = await refresh_segments(session, RULES, NOW, batch=3)
    expected = {"core": 2, "important": 1, "at_risk": 1, "dormant": 1, "potential": 1, "other": 1}
    assert first == second == expected
    async with sessions() as session:
        written = (await session.execute(select(Member.segment, Member.segment_at))).all()
    assert sorted(segment for segment, _ in written) == sorted(
        ["core", "important", "at_risk", "dormant", "potential", "other", "core"]
    )
    assert {at for _, at in written} == {NOW}


@pytest.mark.parametrize(("purchases", "expected"), TIER_CASES)
async def test_tier_standing_reads_what_member_stats_counts(
    sessions: async_sessionmaker[AsyncSession], purchases: list[Purchase], expected: str
) -> None:
    # The 等级 answer's one statement against the stats the tier changes are decided on.
    async with sessions() as session:
        member_id = await add_member(session, purchases, tier="gold")
        await session.commit()
    async with sessions() as session:
        stats = await member_stats(session, RULES, member_id, NOW)
        connection = await session.connection()
        assert await tier_standing(connection, RULES, member_id, NOW) == ("gold", stats)
        assert await tier_standing(connection, RULES, member_id + 1000, NOW) is None
