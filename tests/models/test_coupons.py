"""Coupons: issuing, redeeming (also concurrently), listing, expiring and the figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import coupons
from models.codes import ALPHABET
from models.coupons import (
    Coupon,
    CouponConflict,
    CouponRefused,
    ListedCoupon,
    OrderAmountRequired,
    UnknownCouponKind,
    coupon_stats,
    expire_coupons,
    issue_coupon,
    list_usable_coupons,
    redeem_coupon,
    usable_coupons,
)
from models.members import Member
from models.orders import Order
from models.rules import DEFAULT_COUPONS, CouponKind, ProgrammeRules

RULES = ProgrammeRules()
NOW = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


async def add_members(sessions: Sessions, count: int = 2) -> list[int]:
    async with sessions() as session:
        members = [
            Member(openid=f"o_coupon_{n}", subscribed=True, created_at=NOW) for n in range(count)
        ]
        session.add_all(members)
        await session.commit()
        return [member.id for member in members]


async def issue(
    sessions: Sessions,
    member_id: int,
    kind: str = "cash_10",
    key: str = "k1",
    now: datetime = NOW,
    valid_days: int | None = None,
) -> Coupon:
    """Issue and commit one coupon."""
    async with sessions() as session:
        issued = await issue_coupon(
            session,
            RULES,
            member_id,
            kind,
            reason="测试",
            key=key,
            now=now,
            valid_days=valid_days,
        )
        await session.commit()
        return issued.coupon


async def rows(sessions: Sessions) -> list[tuple[Any, ...]]:
    """Every coupon as stored, to show that a refusal wrote nothing."""
    async with sessions() as session:
        result = await session.execute(
            select(
                Coupon.id,
                Coupon.code,
                Coupon.status,
                Coupon.redeemed_at,
                Coupon.shop_order_id,
            ).order_by(Coupon.id)
        )
        return [tuple(row) for row in result]


async def test_issue_gives_unique_codes_and_the_kinds_validity(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    issued = [await issue(sessions, member, key=f"k{n}") for n in range(20)]
    codes = {coupon.code for coupon in issued}
    assert len(codes) == 20
    assert all(len(code) == 12 and set(code) <= set(ALPHABET) for code in codes)
    first = issued[0]
    assert (first.member_id, first.kind, first.status, first.reason) == (
        member,
        "cash_10",
        "issued",
        "测试",
    )
    assert first.issued_at == first.valid_from == NOW
    assert first.valid_until == NOW + timedelta(days=RULES.coupon_kind("cash_10").valid_days)


async def test_issue_takes_an_explicit_validity(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member, valid_days=7)
    assert coupon.valid_until == NOW + timedelta(days=7)
    async with sessions() as session:
        with pytest.raises(ValueError, match="at least one day"):
            await issue_coupon(
                session, RULES, member, "cash_10", reason="r", key="k2", now=NOW, valid_days=0
            )


async def test_issue_draws_again_when_the_code_is_taken(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    (member,) = await add_members(sessions, 1)
    drawn = iter(["AAAAAAAAAAAA", "AAAAAAAAAAAA", "BBBBBBBBBBBB"])
    monkeypatch.setattr(coupons, "new_coupon_code", lambda: next(drawn))
    first = await issue(sessions, member, key="k1")
    second = await issue(sessions, member, key="k2")
    assert (first.code, second.code) == ("AAAAAAAAAAAA", "BBBBBBBBBBBB")


async def test_issue_is_idempotent_on_its_key(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    first = await issue(sessions, member, key="birthday:2025")
    async with sessions() as session:
        again = await issue_coupon(
            session,
            RULES,
            member,
            "cash_10",
            reason="测试",
            key="birthday:2025",
            now=NOW + timedelta(days=1),
        )
        await session.commit()
        assert again.replayed
        assert (again.coupon.id, again.coupon.code) == (first.id, first.code)
        assert again.coupon.valid_from == NOW
        assert await session.scalar(select(func.count()).select_from(Coupon)) == 1


async def test_issue_refuses_a_key_used_for_something_else(sessions: Sessions) -> None:
    member, other = await add_members(sessions)
    await issue(sessions, member, key="k1")
    async with sessions() as session:
        with pytest.raises(CouponConflict):
            await issue_coupon(session, RULES, other, "cash_10", reason="r", key="k1", now=NOW)
        with pytest.raises(CouponConflict):
            await issue_coupon(session, RULES, member, "full_300_50", reason="r", key="k1", now=NOW)


async def test_issue_refuses_an_unknown_kind(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    async with sessions() as session:
        with pytest.raises(UnknownCouponKind):
            await issue_coupon(session, RULES, member, "free_lunch", reason="r", key="k", now=NOW)
    assert await rows(sessions) == []


async def test_redeem_marks_the_coupon_and_replays(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member)
    at = NOW + timedelta(days=3)
    async with sessions() as session:
        redeemed = await redeem_coupon(
            session, RULES, coupon.code, member_id=member, shop_order_id="SO-1", now=at
        )
        await session.commit()
    assert not redeemed.replayed
    assert (redeemed.coupon.id, redeemed.coupon.status) == (coupon.id, "redeemed")
    assert (redeemed.coupon.redeemed_at, redeemed.coupon.shop_order_id) == (at, "SO-1")
    assert await rows(sessions) == [(coupon.id, coupon.code, "redeemed", at, "SO-1")]
    # The shop retries (even after the coupon's validity, and without saying whose it is).
    async with sessions() as session:
        again = await redeem_coupon(
            session,
            RULES,
            coupon.code,
            member_id=None,
            shop_order_id="SO-1",
            now=NOW + timedelta(days=90),
        )
    assert again.replayed
    assert (again.coupon.id, again.coupon.redeemed_at) == (coupon.id, at)


async def test_redeem_without_a_member_id(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member)
    async with sessions() as session:
        redeemed = await redeem_coupon(
            session, RULES, coupon.code, member_id=None, shop_order_id="SO-1", now=NOW
        )
    assert redeemed.coupon.status == "redeemed"


@pytest.mark.parametrize(
    ("reason", "target", "who", "order", "days"),
    [
        ("unknown", "missing", "member", "SO-2", 1),
        ("expired", "fresh", "member", "SO-2", 30),  # valid_until is exclusive
        ("expired", "fresh", "member", "SO-2", 31),
        ("used", "used", "member", "SO-2", 1),
        ("not_yours", "fresh", "other", "SO-2", 1),
        ("not_yours", "used", "other", "SO-1", 1),  # someone else's order is no replay
        ("not_yet_valid", "fresh", "member", "SO-2", -1),
    ],
)
async def test_redeem_refusals_write_nothing(
    sessions: Sessions, reason: str, target: str, who: str, order: str, days: int
) -> None:
    member, other = await add_members(sessions)
    used = await issue(sessions, member, key="used")
    async with sessions() as session:
        await redeem_coupon(
            session, RULES, used.code, member_id=member, shop_order_id="SO-1", now=NOW
        )
        await session.commit()
    fresh = await issue(sessions, member, key="fresh")
    code = {"missing": "ZZZZZZZZZZZZ", "used": used.code, "fresh": fresh.code}[target]
    before = await rows(sessions)
    async with sessions() as session:
        with pytest.raises(CouponRefused) as refused:
            await redeem_coupon(
                session,
                RULES,
                code,
                member_id=other if who == "other" else member,
                shop_order_id=order,
                now=NOW + timedelta(days=days),
            )
        await session.commit()
    assert refused.value.reason == reason
    assert str(refused.value) == reason
    assert await rows(sessions) == before


async def test_redeem_refuses_a_coupon_the_job_expired(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member, valid_days=1)
    async with sessions() as session:
        assert await expire_coupons(session, NOW + timedelta(days=2)) == 1
        await session.commit()
    async with sessions() as session:
        # Even at a time inside the window (a late-arriving redemption): the status decides.
        with pytest.raises(CouponRefused, match="expired"):
            await redeem_coupon(
                session, RULES, coupon.code, member_id=member, shop_order_id="SO-1", now=NOW
            )


async def test_concurrent_redemptions_of_one_code_have_one_winner(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    for round_ in range(5):
        coupon = await issue(sessions, member, key=f"k{round_}")
        ready = asyncio.Barrier(2)

        async def attempt(
            order: str, code: str = coupon.code, ready: asyncio.Barrier = ready
        ) -> str | None:
            async with sessions() as session:
                await session.connection()
                # Both sessions hold a connection before either redeems.
                await ready.wait()
                try:
                    result = await redeem_coupon(
                        session, RULES, code, member_id=member, shop_order_id=order, now=NOW
                    )
                except CouponRefused as refused:
                    return refused.reason
                await session.commit()
                return result.coupon.shop_order_id

        outcomes = await asyncio.gather(attempt("SO-A"), attempt("SO-B"))
        assert sorted(outcomes) in (["SO-A", "used"], ["SO-B", "used"])
        winner = next(outcome for outcome in outcomes if outcome != "used")
        async with sessions() as session:
            stored = await session.scalar(select(Coupon).where(Coupon.code == coupon.code))
        assert (stored.status, stored.shop_order_id) == ("redeemed", winner)


async def test_usable_coupons_are_live_and_soonest_to_expire_first(sessions: Sessions) -> None:
    member, other = await add_members(sessions)
    month = await issue(sessions, member, key="month", valid_days=30)
    week = await issue(sessions, member, key="week", valid_days=7)
    quarter = await issue(sessions, member, key="quarter", valid_days=90)
    redeemed = await issue(sessions, member, key="redeemed")
    await issue(sessions, member, key="lapsed", valid_days=1)
    await issue(sessions, member, key="later", now=NOW + timedelta(days=5))
    await issue(sessions, other, key="other's")
    at = NOW + timedelta(days=2)
    async with sessions() as session:
        await redeem_coupon(
            session, RULES, redeemed.code, member_id=member, shop_order_id="SO", now=at
        )
        listed = await usable_coupons(session, member, at)
        # The 我的券 answer's Core read lists the same coupons, in the same order.
        shown = await list_usable_coupons(await session.connection(), member, at)
    assert [coupon.id for coupon in listed] == [week.id, month.id, quarter.id]
    assert shown == [ListedCoupon(c.kind, c.code, c.valid_until) for c in listed]


async def test_expire_job_marks_only_lapsed_issued_coupons(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    short = await issue(sessions, member, key="short", valid_days=1)
    boundary = await issue(sessions, member, key="boundary", valid_days=2)
    live = await issue(sessions, member, key="live", valid_days=3)
    used = await issue(sessions, member, key="used", valid_days=1)
    async with sessions() as session:
        await redeem_coupon(
            session, RULES, used.code, member_id=member, shop_order_id="SO", now=NOW
        )
        await session.commit()
    at = NOW + timedelta(days=2)
    async with sessions() as session:
        assert await expire_coupons(session, at) == 2
        await session.commit()
    async with sessions() as session:
        assert await expire_coupons(session, at) == 0
        statuses = dict((await session.execute(select(Coupon.id, Coupon.status))).all())
    assert statuses == {
        short.id: "expired",
        boundary.id: "expired",
        live.id: "issued",
        used.id: "redeemed",
    }


async def test_stats_count_issued_redeemed_and_expired_per_kind(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    cash = [await issue(sessions, member, key=f"cash{n}", valid_days=1) for n in range(4)]
    await issue(sessions, member, kind="full_300_50", key="full0")
    await issue(sessions, member, kind="birthday_gift", key="gift", now=NOW - timedelta(days=40))
    async with sessions() as session:
        for n, coupon in enumerate(cash[:2]):
            await redeem_coupon(
                session, RULES, coupon.code, member_id=member, shop_order_id=f"SO-{n}", now=NOW
            )
        await expire_coupons(session, NOW + timedelta(days=1))
        await session.commit()
    async with sessions() as session:
        everything = await coupon_stats(session)
        recent = await coupon_stats(session, since=NOW)
        assert await coupon_stats(session, since=NOW + timedelta(seconds=1)) == {}
    assert everything == {
        "cash_10": {"issued": 4, "redeemed": 2, "expired": 2},
        "full_300_50": {"issued": 1, "redeemed": 0, "expired": 0},
        "birthday_gift": {"issued": 1, "redeemed": 0, "expired": 1},
    }
    assert recent == {
        "cash_10": {"issued": 4, "redeemed": 2, "expired": 2},
        "full_300_50": {"issued": 1, "redeemed": 0, "expired": 0},
    }


# The kinds' conditions (issue 18): 满300 needs the order amount, first-order and tier coupons.
CONDITIONS = ProgrammeRules(
    coupons=[
        *RULES.coupons,
        CouponKind(
            code="gold_only", name="金卡专享", type="cash", discount_fen=100, tiers=["gold"]
        ),
    ]
)


async def redeem_with(
    sessions: Sessions, code: str, order: str, amount: int | None = None, now: datetime = NOW
) -> str:
    """Redeem and commit; the coupon's status, or the refusal's reason."""
    async with sessions() as session:
        try:
            result = await redeem_coupon(
                session,
                CONDITIONS,
                code,
                member_id=None,
                shop_order_id=order,
                now=now,
                order_amount_fen=amount,
            )
        except CouponRefused as refused:
            return refused.reason
        await session.commit()
        return result.coupon.status


async def add_order(sessions: Sessions, member: int, order: str, refunded: int = 0) -> None:
    async with sessions() as session:
        session.add(
            Order(
                shop_order_id=order,
                member_id=member,
                amount_fen=10_000,
                refunded_fen=refunded,
                paid_at=NOW - timedelta(days=1),
                channel="shop",
                fingerprint="f",
                created_at=NOW,
            )
        )
        await session.commit()


async def test_a_threshold_coupon_needs_the_amount_and_reaches_it(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member, kind="full_300_50")
    before = await rows(sessions)
    async with sessions() as session:
        with pytest.raises(OrderAmountRequired):
            await redeem_coupon(
                session, CONDITIONS, coupon.code, member_id=None, shop_order_id="SO-1", now=NOW
            )
        with pytest.raises(CouponRefused) as refused:
            await redeem_coupon(
                session,
                CONDITIONS,
                coupon.code,
                member_id=None,
                shop_order_id="SO-1",
                now=NOW,
                order_amount_fen=29_999,
            )
        await session.commit()
    assert (refused.value.reason, refused.value.threshold_fen) == ("below_threshold", 30_000)
    assert await rows(sessions) == before
    assert await redeem_with(sessions, coupon.code, "SO-1", 30_000) == "redeemed"
    # The shop's retry replays, even without the amount.
    assert await redeem_with(sessions, coupon.code, "SO-1") == "redeemed"


async def test_a_cash_coupon_needs_no_amount(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member)
    assert await redeem_with(sessions, coupon.code, "SO-1") == "redeemed"


async def test_a_tier_coupon_checks_the_members_tier(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    async with sessions() as session:
        coupon = (
            await issue_coupon(
                session, CONDITIONS, member, "gold_only", reason="r", key="g", now=NOW
            )
        ).coupon
        await session.commit()
    before = await rows(sessions)
    assert await redeem_with(sessions, coupon.code, "SO-1") == "tier_not_eligible"
    assert await rows(sessions) == before
    async with sessions() as session:
        await session.execute(update(Member).where(Member.id == member).values(tier="gold"))
        await session.commit()
    assert await redeem_with(sessions, coupon.code, "SO-1") == "redeemed"


async def test_a_first_order_coupon_is_for_the_first_paid_order_only(
    sessions: Sessions,
) -> None:
    first, second, refunded = await add_members(sessions, 3)
    kind = "welcome_first_order"
    # The order redeemed against may be recorded already: it is still the first.
    await add_order(sessions, first, "SO-FIRST")
    coupon = await issue(sessions, first, kind=kind, key="w1")
    assert await redeem_with(sessions, coupon.code, "SO-FIRST") == "redeemed"
    # A member with another paid order has had their first.
    await add_order(sessions, second, "SO-EARLIER")
    coupon = await issue(sessions, second, kind=kind, key="w2")
    before = await rows(sessions)
    assert await redeem_with(sessions, coupon.code, "SO-LATER") == "not_first_order"
    assert await rows(sessions) == before
    # An order refunded in full does not count as bought.
    await add_order(sessions, refunded, "SO-RETURNED", refunded=10_000)
    coupon = await issue(sessions, refunded, kind=kind, key="w3")
    assert await redeem_with(sessions, coupon.code, "SO-NEXT") == "redeemed"


async def test_the_validity_is_checked_before_the_conditions(sessions: Sessions) -> None:
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member, kind="full_300_50")
    late = NOW + timedelta(days=31)
    assert await redeem_with(sessions, coupon.code, "SO-1", 100, now=late) == "expired"


async def test_two_orders_redeem_one_threshold_coupon_at_once_one_wins(
    sessions: Sessions, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("real concurrent transactions: PostgreSQL")
    (member,) = await add_members(sessions, 1)
    coupon = await issue(sessions, member, kind="full_300_50")
    ready = asyncio.Barrier(2)

    async def attempt(order: str) -> str:
        async with sessions() as session:
            await session.connection()
            await ready.wait()  # both transactions are open before either redeems
            try:
                await redeem_coupon(
                    session,
                    CONDITIONS,
                    coupon.code,
                    member_id=member,
                    shop_order_id=order,
                    now=NOW,
                    order_amount_fen=40_000,
                )
            except CouponRefused as refused:
                return refused.reason
            await session.commit()
            return order

    outcomes = await asyncio.gather(attempt("SO-A"), attempt("SO-B"))
    assert sorted(outcomes) in (["SO-A", "used"], ["SO-B", "used"])
    async with sessions() as session:
        stored = await session.scalar(select(Coupon).where(Coupon.code == coupon.code))
    assert (stored.status, stored.shop_order_id) == ("redeemed", min(outcomes))


def test_kinds_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="threshold coupon needs threshold_fen"):
        CouponKind(code="bad", name="满减", type="threshold", discount_fen=100)
    with pytest.raises(ValueError, match="no tier platinum"):
        ProgrammeRules(
            coupons=[
                *DEFAULT_COUPONS,
                CouponKind(code="p", name="p", type="cash", tiers=["platinum"]),
            ]
        )
