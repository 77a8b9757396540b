"""Benefit rules (礼遇规则): each issues once per member and period, stops at its budget,
issues nothing while paused, records its holdout, and keeps the ledger consistent."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models.benefit_settings import BenefitsConfig, Gift
from models.benefits.behaviour import run_profile, run_survey
from models.benefits.engine import (
    active_benefits,
    grant,
    issued_this_month,
    with_settings,
)
from models.benefits.periodic import run_anniversaries, run_birthdays, run_monthly_tier
from models.benefits.segment import run_segment_entered
from models.benefits.sets import RuleRun, run_gift
from models.benefits.tables import BenefitGrant, BenefitOverride
from models.benefits.welcome import grant_welcome
from models.binding import claim_binding_code, create_binding_code
from models.coupons import Coupon
from models.deliveries import Delivery
from models.ledger import LedgerEntry, PointLot, credit, verify_ledger
from models.members import Member
from models.order_posting import record_order
from models.orders import OrderIn
from models.ratings import Rating
from models.rules import ProgrammeRules
from models.segments import refresh_segments

RULES = ProgrammeRules()
# 10:00 on 1 December 2026 in Shanghai.
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]
_openids = itertools.count()


async def add_members(sessions: Sessions, tiers: list[str], **values: Any) -> list[int]:
    async with sessions() as session:
        members = [
            Member(
                openid=f"o_benefit_{next(_openids):05d}",
                subscribed=True,
                tier=tier,
                created_at=values.get("created_at", NOW - timedelta(days=30)),
                birthday=values.get("birthday"),
                name=values.get("name"),
            )
            for tier in tiers
        ]
        session.add_all(members)
        await session.commit()
        return [member.id for member in members]


def push_for(key: str, gift: Gift) -> tuple[str, str, dict[str, Any]]:
    return "test_gift", "service", {"text": f"gift {key}"}


async def monthly(sessions: Sessions, rules: ProgrammeRules = RULES, now: datetime = NOW) -> Any:
    async with sessions() as session:
        config = await active_benefits(session, rules)
        return await run_monthly_tier(session, rules, config, now, push_for)


async def count(sessions: Sessions, query: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(query) or 0)


def coupons_of(kind: str) -> Any:
    return select(func.count()).select_from(Coupon).where(Coupon.kind == kind)


async def test_monthly_tier_coupon_once_a_month_set_based(sessions: Sessions) -> None:
    await add_members(sessions, ["basic", "silver", "silver", "gold", "diamond"])
    run = await monthly(sessions)
    assert (run.granted, run.pushes) == (4, 4)
    assert run.by_gift == {"silver": 2, "gold": 1, "diamond": 1}
    assert await count(sessions, coupons_of("tier_discount_95")) == 2
    assert await count(sessions, coupons_of("tier_discount_85")) == 1
    # A rerun, later the same month, issues and pushes nothing.
    again = await monthly(sessions, now=NOW + timedelta(days=3))
    assert (again.granted, again.pushes) == (0, 0)
    assert await count(sessions, select(func.count()).select_from(Coupon)) == 4
    # Next month: the next coupon.
    assert (await monthly(sessions, now=NOW + timedelta(days=31))).granted == 4
    async with sessions() as session:
        codes = (await session.scalars(select(Coupon.code))).all()
        keys = (await session.scalars(select(Delivery.dedupe_key))).all()
    assert len(set(codes)) == 8
    assert all(len(code) == 12 for code in codes)
    assert len(keys) == 8


async def test_paused_rule_issues_nothing(sessions: Sessions) -> None:
    await add_members(sessions, ["silver", "gold"])
    async with sessions.begin() as session:
        session.add(
            BenefitOverride(rule="monthly_tier", settings={"enabled": False}, updated_at=NOW)
        )
    run = await monthly(sessions)
    assert run.paused
    assert run.granted == 0
    assert await count(sessions, select(func.count()).select_from(Coupon)) == 0
    assert await count(sessions, select(func.count()).select_from(Delivery)) == 0


async def test_budget_stops_the_rule_and_the_rest_get_nothing(sessions: Sessions) -> None:
    await add_members(sessions, ["silver"] * 5)
    rules = RULES.model_copy(
        update={
            "benefits": with_settings(RULES, RULES.benefits, "monthly_tier", {"monthly_budget": 3})
        }
    )
    run = await monthly(sessions, rules)
    assert (run.granted, run.budget_spent) == (3, True)
    assert (await monthly(sessions, rules, NOW + timedelta(hours=1))).granted == 0
    assert await count(sessions, select(func.count()).select_from(Coupon)) == 3
    async with sessions() as session:
        assert await issued_this_month(session, rules, "monthly_tier", "coupons", NOW) == 3


async def test_budget_in_points_stops_a_points_rule(sessions: Sessions) -> None:
    await add_members(sessions, ["basic"] * 4, birthday=date(1990, 5, 5), name="张三")
    config = with_settings(RULES, RULES.benefits, "profile", {"monthly_budget": 120})
    async with sessions() as session:
        run = await run_profile(session, RULES, config, NOW, push_for)
    assert (run.granted, run.budget_spent) == (2, True)  # 2 × 50 points of a 120 budget
    async with sessions() as session:
        assert [m async for m in verify_ledger(session)] == []
        assert await session.scalar(select(func.sum(Member.points_balance))) == 100


async def test_points_rules_write_entries_lots_and_balances_once(sessions: Sessions) -> None:
    ids = await add_members(sessions, ["basic", "silver"], birthday=date(1990, 5, 5), name="李四")
    await add_members(sessions, ["basic"])  # no profile: nothing
    for _ in range(2):
        async with sessions() as session:
            run = await run_profile(session, RULES, RULES.benefits, NOW, push_for)
    async with sessions() as session:
        assert [m async for m in verify_ledger(session)] == []
        entries = (await session.execute(select(LedgerEntry.member_id, LedgerEntry.points))).all()
        lots = (await session.scalars(select(PointLot.amount))).all()
        balances = (await session.scalars(select(Member.points_balance).order_by(Member.id))).all()
    assert sorted(entries) == [(ids[0], 50), (ids[1], 50)]
    assert lots == [50, 50]
    assert list(balances) == [50, 50, 0]
    assert run.granted == 0  # the second run


async def test_survey_points_once_a_month(sessions: Sessions) -> None:
    (member_id,) = await add_members(sessions, ["basic"])
    async with sessions.begin() as session:
        for n, at in enumerate((NOW - timedelta(hours=1), NOW - timedelta(minutes=5))):
            session.add(
                Rating(
                    question_id=f"q{n}",
                    member_id=member_id,
                    kind="csat",
                    score=5,
                    context="order",
                    tier="basic",
                    asked_at=at,
                    answered_at=at,
                )
            )
    for _ in range(2):
        async with sessions() as session:
            await run_survey(session, RULES, RULES.benefits, NOW, push_for)
    assert await count(sessions, select(Member.points_balance)) == 20


async def test_anniversary_on_the_day_joined_in_an_earlier_year(sessions: Sessions) -> None:
    joined = datetime(2024, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 on 1 December in Shanghai
    await add_members(sessions, ["basic"], created_at=joined)
    await add_members(sessions, ["basic"], created_at=NOW - timedelta(hours=1))  # joined today
    async with sessions() as session:
        run = await run_anniversaries(session, RULES, RULES.benefits, NOW, push_for)
    assert run.granted == 1
    async with sessions() as session:
        assert (await run_anniversaries(session, RULES, RULES.benefits, NOW, push_for)).granted == 0


async def test_birthday_by_tier(sessions: Sessions) -> None:
    await add_members(sessions, ["basic", "silver", "diamond"], birthday=date(1990, 12, 1))
    async with sessions() as session:
        run = await run_birthdays(session, RULES, RULES.benefits, NOW, push_for)
    assert run.by_gift == {"silver": 1, "gold": 0, "diamond": 1}
    async with sessions() as session:
        kinds = sorted((await session.scalars(select(Coupon.kind))).all())
    assert kinds == ["birthday_gift", "birthday_gift_200"]


async def _at_risk_members(sessions: Sessions, count_: int) -> list[int]:
    """Members with 3 purchases long ago: at risk after a segments refresh."""
    ids = await add_members(sessions, ["basic"] * count_, created_at=NOW - timedelta(days=400))
    async with sessions() as session:
        member_rows = (await session.scalars(select(Member).where(Member.id.in_(ids)))).all()
        for member in member_rows:
            for n in range(3):
                await record_order(
                    session,
                    RULES,
                    member,
                    OrderIn(
                        f"R-{member.id}-{n}",
                        member.id,
                        10_000,
                        NOW - timedelta(days=200 + n),
                        "store",
                    ),
                    NOW - timedelta(days=200),
                )
        await session.commit()
    return ids


async def _segments(sessions: Sessions, now: datetime) -> None:
    async with sessions() as session:
        await refresh_segments(session, RULES, now)


async def test_segment_entered_once_per_entry_with_the_holdout_recorded(
    sessions: Sessions,
) -> None:
    ids = await _at_risk_members(sessions, 40)
    await _segments(sessions, NOW)
    config = with_settings(RULES, RULES.benefits, "segment_entered", {"holdout_percent": 25})
    async with sessions() as session:
        run = await run_segment_entered(session, RULES, config, NOW, push_for)
    assert run.granted + run.held_out == 40
    assert 0 < run.held_out < 40
    async with sessions() as session:
        held = set(
            (
                await session.scalars(
                    select(BenefitGrant.member_id).where(BenefitGrant.holdout.is_(True))
                )
            ).all()
        )
        given = set((await session.scalars(select(Coupon.member_id))).all())
        pushed = set((await session.scalars(select(Delivery.member_id))).all())
    assert held
    assert not held & given
    assert not held & pushed
    assert given == pushed == set(ids) - held
    # A day later (still at risk): the same entry, nothing again; held-out members stay out.
    await _segments(sessions, NOW + timedelta(days=1))
    async with sessions() as session:
        later = await run_segment_entered(session, RULES, config, NOW + timedelta(days=1), push_for)
    assert (later.granted, later.held_out) == (0, 0)


async def test_welcome_once_and_not_after_an_order(sessions: Sessions) -> None:
    first, second = await add_members(sessions, ["basic", "basic"])
    async with sessions.begin() as session:
        assert await grant_welcome(session, RULES, first, NOW) is not None
        assert await grant_welcome(session, RULES, first, NOW) is None
        member = await session.get_one(Member, second)
        await record_order(session, RULES, member, OrderIn("W-1", second, 5_000, NOW, "store"), NOW)
        assert await grant_welcome(session, RULES, second, NOW) is None
    assert await count(sessions, coupons_of("welcome_first_order")) == 1


async def test_repeat_order_gift_on_the_second_order_and_upgrade_gifts(
    sessions: Sessions,
) -> None:
    (member_id,) = await add_members(sessions, ["basic"])
    async with sessions() as session:
        member = await session.get_one(Member, member_id)
        for n in range(2):
            await record_order(
                session, RULES, member, OrderIn(f"N-{n}", member_id, 1_000, NOW, "store"), NOW
            )
        # ¥5,000 at once: basic → gold (two levels): the gold gift and the growth reward.
        outcome = await record_order(
            session, RULES, member, OrderIn("N-big", member_id, 500_000, NOW, "store"), NOW
        )
        await session.commit()
    assert outcome.upgrade is not None
    assert outcome.upgrade.to_tier == "gold"
    async with sessions() as session:
        reasons = (
            await session.scalars(
                select(LedgerEntry.reason)
                .where(LedgerEntry.kind == "bonus")
                .order_by(LedgerEntry.id)
            )
        ).all()
        assert [m async for m in verify_ledger(session)] == []
    assert list(reasons) == ["复购赠礼", "升级礼", "年度成长奖励"]


async def test_dated_boost_is_in_the_orders_own_entry(sessions: Sessions) -> None:
    (member_id,) = await add_members(sessions, ["basic"])
    national_day = datetime(2026, 10, 2, 4, tzinfo=UTC)
    async with sessions() as session:
        member = await session.get_one(Member, member_id)
        outcome = await record_order(
            session,
            RULES,
            member,
            OrderIn("B-1", member_id, 10_000, national_day, "store"),
            national_day,
        )
        await session.commit()
    assert outcome.points == 200
    async with sessions() as session:
        entry = await session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "earn"))
    assert entry is not None
    assert (entry.points, entry.reason) == (200, "订单 B-1（国庆双倍积分）")


async def test_paused_boost_leaves_the_order_alone(sessions: Sessions) -> None:
    (member_id,) = await add_members(sessions, ["basic"])
    rules = RULES.model_copy(
        update={
            "benefits": with_settings(
                RULES, RULES.benefits, "boost:national_day", {"enabled": False}
            )
        }
    )
    national_day = datetime(2026, 10, 2, 4, tzinfo=UTC)
    async with sessions() as session:
        member = await session.get_one(Member, member_id)
        outcome = await record_order(
            session, rules, member, OrderIn("B-2", member_id, 10_000, national_day, "store"), NOW
        )
    assert outcome.points == 100


async def test_grant_budget_holds_under_concurrency_on_postgresql(
    sessions: Sessions, db_url: str
) -> None:
    """Concurrent triggered grants of a budgeted rule never overspend its budget."""
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's")
    ids = await add_members(sessions, ["basic"] * 10)
    config = with_settings(RULES, RULES.benefits, "welcome", {"monthly_budget": 4})

    async def one(member_id: int) -> bool:
        async with sessions.begin() as session:
            given = await grant(
                session,
                RULES,
                "welcome",
                config.welcome,
                member_id,
                "once",
                config.welcome,
                reason="新人礼",
                now=NOW,
            )
            return given is not None

    results = await asyncio.gather(*(one(m) for m in ids))
    assert sum(results) == 4
    assert await count(sessions, coupons_of("welcome_first_order")) == 4


async def test_two_schedulers_running_the_monthly_rule_give_one_coupon_each(
    sessions: Sessions, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's")
    await add_members(sessions, ["silver"] * 60 + ["gold"] * 40)
    runs = await asyncio.gather(monthly(sessions), monthly(sessions))
    assert sum(run.granted for run in runs) == 100
    async with sessions() as session:
        per_member = (
            await session.execute(select(Coupon.member_id, func.count()).group_by(Coupon.member_id))
        ).all()
        pushes = await session.scalar(select(func.count()).select_from(Delivery))
    assert len(per_member) == 100
    assert all(n == 1 for _, n in per_member)
    assert pushes == 100


async def test_two_runs_of_the_points_rule_and_member_credits_at_once_credit_each_once(
    sessions: Sessions, db_url: str
) -> None:
    """Two schedulers granting profile points while the members earn points of their own:
    50 each once, every own credit kept, one push each, the ledger consistent."""
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's")
    ids = await add_members(sessions, ["basic"] * 80, birthday=date(1990, 5, 5), name="王五")

    async def profile() -> Any:
        async with sessions() as session:
            return await run_profile(session, RULES, RULES.benefits, NOW, push_for)

    async def earn(member_id: int) -> None:
        async with sessions.begin() as session:
            await credit(
                session,
                member_id,
                7,
                kind="earn",
                reason="订单",
                key=f"test-earn:{member_id}",
                at=NOW,
                expires_at=NOW + timedelta(days=365),
            )

    results = await asyncio.gather(profile(), profile(), *(earn(m) for m in ids[::8]))
    assert sum(run.granted for run in results[:2]) == 80
    async with sessions() as session:
        assert [m async for m in verify_ledger(session)] == []
        balances = dict((await session.execute(select(Member.id, Member.points_balance))).all())
        bonuses = await session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "bonus")
        )
        pushes = await session.scalar(select(func.count()).select_from(Delivery))
    assert balances == {m: 57 if m in ids[::8] else 50 for m in ids}
    assert (bonuses, pushes) == (80, 80)


async def test_batches_side_by_side_grant_each_member_once_and_tell_the_points_cache(
    db_url: str,
) -> None:
    """On PostgreSQL a rule's batches run two at a time, each in its own session: every
    member is credited once, each push is handed on once, and every commit tells the points
    cache which members moved (as the service's own sessions do)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("batches side by side are PostgreSQL's")
    told: list[int] = []
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine, after_points_commit=told.extend)
    try:
        ids = await add_members(sessions, ["basic"] * 30)
        handed_on: list[int] = []

        async def on_batch(delivery_ids: list[int]) -> None:
            handed_on.extend(delivery_ids)

        run = RuleRun("profile")
        async with sessions() as session:
            await run_gift(
                session,
                RULES,
                run,
                RULES.benefits.profile,
                period="once",
                gift_key="",
                gift=Gift(points=20),
                conditions=[],
                reason="完善资料奖励",
                now=NOW,
                push=push_for("", Gift(points=20)),
                on_batch=on_batch,
                batch=4,
            )
        async with sessions() as session:
            assert [m async for m in verify_ledger(session)] == []
            balances = dict((await session.execute(select(Member.id, Member.points_balance))).all())
            pushes = list((await session.scalars(select(Delivery.id))).all())
    finally:
        await engine.dispose()
    assert run.granted == 30
    assert balances == dict.fromkeys(ids, 20)
    assert sorted(handed_on) == sorted(pushes)
    assert len(pushes) == 30
    assert sorted(told) == sorted(ids)


def test_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="no coupon kind"):
        with_settings(RULES, RULES.benefits, "welcome", {"coupon": "nope"})
    with pytest.raises(ValueError, match="points"):
        with_settings(RULES, RULES.benefits, "anniversary", {"points": -5})
    changed = with_settings(RULES, RULES.benefits, "boost:member_day", {"multiplier": "3"})
    assert str(changed.boosts["member_day"].multiplier) == "3"
    assert isinstance(changed, BenefitsConfig)


async def test_stored_override_changes_what_is_issued(sessions: Sessions) -> None:
    await add_members(sessions, ["silver"])
    async with sessions.begin() as session:
        session.add(
            BenefitOverride(
                rule="monthly_tier",
                settings={"by_tier": {"silver": {"coupon": "cash_10"}}},
                updated_at=NOW,
            )
        )
    await monthly(sessions)
    assert await count(sessions, coupons_of("cash_10")) == 1
    async with sessions.begin() as session:
        await session.execute(update(BenefitOverride).values(settings={"coupon": "gone"}))
        # An override the configuration no longer accepts is left out.
        assert (await active_benefits(session, RULES)).monthly_tier == RULES.benefits.monthly_tier


async def test_binding_moves_the_followers_grants_to_the_customer(sessions: Sessions) -> None:
    """A follower's welcome grant goes with them when they bind a receipt (the follower's row
    is removed: its grants must move, not block the merge); the customer is not welcomed
    twice."""
    (follower_id,) = await add_members(sessions, ["basic"])
    async with sessions.begin() as session:
        await grant_welcome(session, RULES, follower_id, NOW)
        follower = await session.get_one(Member, follower_id)
        openid = follower.openid
        binding = await create_binding_code(session, "CRM-GRANT", NOW, 24)
    async with sessions.begin() as session:
        customer = await claim_binding_code(session, binding.code, openid, NOW)
        assert await grant_welcome(session, RULES, customer.id, NOW) is None
    async with sessions() as session:
        owners = (await session.scalars(select(BenefitGrant.member_id))).all()
        coupon_owners = (await session.scalars(select(Coupon.member_id))).all()
    assert list(owners) == list(coupon_owners) == [customer.id]


def test_tiers_of_a_brands_own_need_no_benefit_settings_but_written_ones_must_match() -> None:
    """The shipped gifts name the shipped tiers: a brand with its own tiers starts without
    rewriting them (a default gift for no such tier reaches nobody); a by_tier it wrote for a
    tier it does not have is refused, naming it."""
    tiers = [
        {"code": "member", "name": "会员", "min_orders": 0, "multiplier": "1"},
        {"code": "vip", "name": "贵宾", "min_orders": 5, "multiplier": "1.5"},
    ]
    assert ProgrammeRules.model_validate({"tiers": tiers}).tiers[1].code == "vip"
    written = {"monthly_tier": {"by_tier": {"gold": {"coupon": "cash_10"}}}}
    with pytest.raises(ValidationError, match=r"monthly_tier\.by_tier: no tier 'gold'"):
        ProgrammeRules.model_validate({"tiers": tiers, "benefits": written})
