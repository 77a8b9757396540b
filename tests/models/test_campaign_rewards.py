"""Campaign rewards at the model: terms resolved from the programme's coupon kinds, a coupon or
points issued once per campaign and member however often the issue is repeated, and, on
PostgreSQL, by workers recording at the same moment."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.campaign_rewards import (
    CampaignReward,
    Grant,
    Reward,
    issue_rewards,
    reward_stats,
    reward_terms,
)
from models.campaigns import Campaign, CampaignMember, CampaignRun
from models.coupons import Coupon, UnknownCouponKind, redeem_coupon
from models.deliveries import MARKETING, PlannedPush, plan
from models.ledger import LedgerEntry, verify_ledger
from models.members import Member
from models.rules import ProgrammeRules
from tests.models.test_ledger import _until, _waiting_for_locks

RULES = ProgrammeRules()
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


async def campaign_with(
    sessions: Sessions, terms: dict[str, Any], members: int = 3
) -> tuple[int, int, list[Grant]]:
    """A campaign with one run whose pushes to ``members`` members are planned; their grants
    (two runs' pushes to one member carry the same campaign and member)."""
    async with sessions.begin() as session:
        people = [
            Member(openid=f"o_reward_{n:04d}", subscribed=True, created_at=NOW)
            for n in range(members)
        ]
        session.add_all(people)
        campaign = Campaign(
            name="彩妆回购",
            status="approved",
            audience={},
            variants=[{"name": "A", "text": "hi", "share": 100}],
            holdout_percent=0,
            schedule="now",
            reward=terms,
            created_by="mia",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(campaign)
        await session.flush()
        run = CampaignRun(campaign_id=campaign.id, started_at=NOW)
        session.add(run)
        await session.flush()
        session.add_all(CampaignMember(run_id=run.id, member_id=m.id, variant="A") for m in people)
        ids = await plan(
            session,
            "campaign",
            MARKETING,
            [PlannedPush(m.id, f"campaign:{run.id}:{m.id}", {"text": "hi"}) for m in people],
            NOW,
        )
        grants = [
            Grant(
                campaign_id=campaign.id,
                run_id=run.id,
                member_id=m.id,
                delivery_id=delivery_id,
                coupon=terms.get("coupon"),
                valid_days=int(terms.get("valid_days", 0)),
                points=terms.get("points"),
            )
            for m, delivery_id in zip(people, ids, strict=True)
        ]
        return campaign.id, run.id, grants


COUPON = {"coupon": "full_300_50", "name": "满300减50", "valid_days": 30}


def test_terms_come_from_the_programme_s_coupon_kinds() -> None:
    assert reward_terms(Reward(coupon="full_300_50"), RULES) == COUPON
    assert reward_terms(Reward(points=200), RULES) == {"points": 200}
    assert reward_terms(None, RULES) is None
    with pytest.raises(UnknownCouponKind):
        reward_terms(Reward(coupon="no_such_kind"), RULES)


@pytest.mark.parametrize(
    "raw",
    [
        {},  # neither
        {"coupon": "cash_10", "points": 10},  # both
        {"points": 0},
        {"points": -5},
        {"points": 10_001},  # absurd
        {"coupon": "DROP TABLE"},
    ],
)
def test_bad_rewards_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Reward.model_validate(raw)


async def test_a_coupon_is_issued_once_per_campaign_and_member(sessions: Sessions) -> None:
    campaign_id, _, grants = await campaign_with(sessions, COUPON)
    async with sessions.begin() as session:
        assert await issue_rewards(session, grants, RULES, NOW) == 3
    # The same pushes again (a retry), and one member's twice in one batch: nothing more.
    async with sessions.begin() as session:
        assert await issue_rewards(session, [*grants, grants[0]], RULES, NOW) == 0
    async with sessions() as session:
        coupons = (await session.scalars(select(Coupon).order_by(Coupon.member_id))).all()
        rewards = (await session.scalars(select(CampaignReward))).all()
    assert [c.member_id for c in coupons] == [g.member_id for g in grants]
    assert {c.kind for c in coupons} == {"full_300_50"}
    assert {(c.valid_until - c.valid_from).days for c in coupons} == {30}
    assert sorted(r.coupon_code for r in rewards) == sorted(c.code for c in coupons)

    async with sessions.begin() as session:
        await redeem_coupon(
            session,
            RULES,
            coupons[0].code,
            member_id=None,
            shop_order_id="SO-1",
            now=NOW,
            order_amount_fen=30_000,
        )
    async with sessions() as session:
        stats = await reward_stats(session, campaign_id)
    assert stats["A"].rewarded == 3
    assert (stats["A"].coupons_issued, stats["A"].coupons_redeemed) == (3, 1)
    assert stats["A"].redemption_rate == pytest.approx(1 / 3)


async def test_points_are_credited_once_through_the_ledger(sessions: Sessions) -> None:
    campaign_id, _, grants = await campaign_with(sessions, {"points": 200})
    async with sessions.begin() as session:
        assert await issue_rewards(session, grants, RULES, NOW) == 3
    async with sessions.begin() as session:
        assert await issue_rewards(session, grants, RULES, NOW) == 0
    async with sessions() as session:
        balances = (await session.scalars(select(Member.points_balance))).all()
        entries = (await session.scalars(select(LedgerEntry))).all()
        assert [m async for m in verify_ledger(session)] == []
        stats = await reward_stats(session, campaign_id)
    assert balances == [200, 200, 200]
    assert {(e.kind, e.points, e.balance_after) for e in entries} == {("bonus", 200, 200)}
    assert (stats["A"].points, stats["A"].coupons_issued) == (600, 0)


@pytest.mark.parametrize("terms", [COUPON, {"points": 150}])
async def test_workers_recording_at_once_reward_a_member_once(
    pg_sessions: Sessions,
    terms: dict[str, Any],
) -> None:
    """Two runs' pushes to one member (a recurring campaign), and the same push recorded by a
    second worker, all at once: the first holds its reward row; the others wait on it, then
    issue nothing."""
    _, run_id, grants = await campaign_with(pg_sessions, terms, members=1)
    grant = grants[0]
    async with pg_sessions.begin() as session:
        second = await plan(
            session,
            "campaign",
            MARKETING,
            [PlannedPush(grant.member_id, f"campaign:{run_id}:again", {"text": "hi"})],
            NOW,
        )
    again = replace(grant, delivery_id=second[0])

    async def record(session: AsyncSession, which: Grant) -> int:
        return await issue_rewards(session, [which], RULES, NOW)

    first = pg_sessions()
    await first.begin()
    assert await record(first, grant) == 1
    others = [asyncio.create_task(_in_own(pg_sessions, record, g)) for g in (grant, again) * 4]
    try:
        await _until(_waiting_for_locks(pg_sessions, len(others)), "the others wait")
        await first.commit()
    finally:
        await first.close()
        results = await asyncio.gather(*others, return_exceptions=True)
    assert results == [0] * len(others)
    async with pg_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Coupon)) == (
            1 if "coupon" in terms else 0
        )
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)) == (
            1 if "points" in terms else 0
        )
        assert await session.scalar(select(func.count()).select_from(CampaignReward)) == 1
        assert [m async for m in verify_ledger(session)] == []


async def _in_own(sessions: Sessions, record: Any, grant: Grant) -> int:
    async with sessions.begin() as session:
        return int(await record(session, grant))
