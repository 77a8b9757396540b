"""The points catalogue: what a member can redeem, every refusal, one redemption per key, the
fulfilment's close with points returned at their original expiry, and real concurrency on
PostgreSQL (the last items, the same confirmation twice, a limit of one)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from messages.copy import ledger_reason
from models import Base
from models.coupons import usable_coupons
from models.figures import programme_figures
from models.ledger import KeyConflict, LedgerEntry, PointLot, credit, verify_ledger
from models.members import Member
from models.recap import MemberRecap, build_recaps
from models.redemption import redeem, redeem_on_its_own
from models.redemption_groups import Redemptions
from models.rewards import (
    Added,
    FulfilmentRefused,
    Redeemed,
    Redemption,
    Refusal,
    RewardItem,
    RewardSpec,
    add_item,
    catalogue,
    close_fulfilment,
    fulfilments,
    new_item,
)
from models.rules import ProgrammeRules

RULES = ProgrammeRules()
Redeemer = Callable[..., Awaitable[Redeemed | Refusal]]
NOW = datetime(2026, 12, 10, 4, tzinfo=UTC)  # 12:00 in Shanghai


async def member_with(
    sessions: async_sessionmaker[AsyncSession],
    openid: str,
    lots: list[tuple[int, datetime, datetime]],
    tier: str = "basic",
) -> int:
    """A member holding ``lots`` of (points, earned at, expires at)."""
    async with sessions.begin() as session:
        member = Member(openid=openid, subscribed=True, created_at=NOW, tags=[], tier=tier)
        session.add(member)
        await session.flush()
        for n, (points, earned, expires) in enumerate(lots):
            await credit(
                session,
                member.id,
                points,
                kind="earn",
                reason="test",
                key=f"seed:{openid}:{n}",
                at=earned,
                expires_at=expires,
            )
        return member.id


async def item(sessions: async_sessionmaker[AsyncSession], **fields: Any) -> int:
    spec = {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100}
    async with sessions.begin() as session:
        row = new_item(RewardSpec.model_validate({**spec, **fields}), NOW - timedelta(days=1))
        session.add(row)
        await session.flush()
        return row.id


async def redeem_now(
    sessions: async_sessionmaker[AsyncSession],
    member_id: int,
    item_id: int,
    key: str,
    now: datetime = NOW,
    **kw: Any,
) -> Redeemed | Refusal:
    async with sessions.begin() as session:
        return await redeem(session, RULES, member_id, item_id, key=key, now=now, **kw)


async def redeem_alone(
    sessions: async_sessionmaker[AsyncSession],
    member_id: int,
    item_id: int,
    key: str,
    now: datetime = NOW,
    **kw: Any,
) -> Redeemed | Refusal:
    return await redeem_on_its_own(sessions, RULES, member_id, item_id, key=key, now=now, **kw)


# One Redemptions per database, as one per process: concurrent confirmations share its groups.
_GROUPS: WeakKeyDictionary[async_sessionmaker[AsyncSession], Redemptions] = WeakKeyDictionary()


async def redeem_grouped(
    sessions: async_sessionmaker[AsyncSession],
    member_id: int,
    item_id: int,
    key: str,
    now: datetime = NOW,
    **kw: Any,
) -> Redeemed | Refusal:
    redemptions = _GROUPS.setdefault(sessions, Redemptions(sessions))
    return await redemptions.redeem(RULES, member_id, item_id, key=key, now=now, **kw)


# The races below run through every way in: a caller's transaction (the member centre, the
# API), a transaction of its own (autocommit on PostgreSQL), and grouped with other
# confirmations of the item (the chat's 确认 on PostgreSQL).
REDEEMERS = pytest.mark.parametrize(
    "redeem_now",
    [redeem_now, redeem_alone, redeem_grouped],
    ids=["in_tx", "alone", "grouped"],
)


def year(n: int) -> datetime:
    return datetime(n, 1, 1, tzinfo=UTC)


async def balance(sessions: async_sessionmaker[AsyncSession], member_id: int) -> int:
    async with sessions() as session:
        return await session.scalar(select(Member.points_balance).where(Member.id == member_id))


async def mismatches(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as session:
        return [m async for m in verify_ledger(session)]


async def test_a_coupon_reward_debits_the_oldest_lots_and_lands_in_my_coupons(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    old = (60, NOW - timedelta(days=300), NOW + timedelta(days=60))
    new = (500, NOW - timedelta(days=10), NOW + timedelta(days=350))
    member_id = await member_with(sessions, "o_rw_coupon", [new, old])
    item_id = await item(
        sessions, name="满300减50券", kind="coupon", coupon_kind="full_300_50", delivery=None
    )
    done = await redeem_now(sessions, member_id, item_id, "k1")
    assert isinstance(done, Redeemed)
    assert done.status == "issued"
    assert done.coupon_code
    assert done.balance_after == 460
    assert done.pickup_code is None
    async with sessions() as session:
        coupons = await usable_coupons(session, member_id, NOW)
        lots = (await session.scalars(select(PointLot).order_by(PointLot.earned_at))).all()
    assert [c.code for c in coupons] == [done.coupon_code]
    assert [lot.remaining for lot in lots] == [0, 460]  # the oldest lot went first
    assert await mismatches(sessions) == []


async def test_a_redemption_on_its_own_is_committed_and_tells_the_points_cache(
    db_url: str,
) -> None:
    """The chat's 确认 redeems in a transaction of its own (one autocommit statement on
    PostgreSQL): committed when the call returns, the points cache told once, a second call
    with the key a replay, and a refusal leaves nothing behind."""
    told: list[int] = []
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine, after_points_commit=told.extend)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(text(f"DELETE FROM {table.name}"))
        member_id = await member_with(sessions, "o_rw_alone", [(250, NOW, year(2028))])
        item_id = await item(sessions, stock=2, points_price=200)
        told.clear()
        first = await redeem_alone(sessions, member_id, item_id, "alone:1", expected_points=200)
        assert isinstance(first, Redeemed)
        assert not first.replayed
        assert first.balance_after == 50
        assert first.reward.stock == 1
        assert told == [member_id]
        again = await redeem_alone(sessions, member_id, item_id, "alone:1", expected_points=200)
        assert isinstance(again, Redeemed)
        assert again.replayed
        assert again.redemption_id == first.redemption_id
        refused = await redeem_alone(sessions, member_id, item_id, "alone:2")
        assert refused == Refusal("not_enough_points", shortfall=150)
        assert told == [member_id]  # the replay and the refusal moved nothing
        async with sessions() as session:
            assert (await session.get_one(RewardItem, item_id)).stock == 1
            assert len((await session.scalars(select(Redemption))).all()) == 1
        assert await balance(sessions, member_id) == 50
        assert await mismatches(sessions) == []
    finally:
        await engine.dispose()


async def test_the_same_key_redeems_once_and_another_item_with_it_is_a_conflict(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(sessions, "o_rw_once", [(500, NOW, year(2028))])
    item_id = await item(sessions, stock=3)
    other = await item(sessions, name="另一件")
    first = await redeem_now(sessions, member_id, item_id, "confirm-1")
    again = await redeem_now(sessions, member_id, item_id, "confirm-1")
    assert isinstance(first, Redeemed)
    assert isinstance(again, Redeemed)
    assert again.replayed
    assert again.redemption_id == first.redemption_id
    assert again.pickup_code == first.pickup_code
    assert await balance(sessions, member_id) == 400
    with pytest.raises(KeyConflict):
        await redeem_now(sessions, member_id, other, "confirm-1")
    async with sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 2


async def test_every_refusal_says_which_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(sessions, "o_rw_refusals", [(150, NOW, year(2028))])
    cases = {
        "not_enough_points": await item(sessions, points_price=200),
        "not_in_tier": await item(sessions, tiers=["gold", "diamond"]),
        "sold_out": await item(sessions, stock=0),
        "not_open_yet": await item(sessions, valid_from=NOW + timedelta(days=2)),
        "ended": await item(sessions, valid_until=NOW - timedelta(seconds=1)),
    }
    retired = await item(sessions)
    async with sessions.begin() as session:
        (await session.get_one(RewardItem, retired)).status = "retired"
    cases["retired"] = retired
    for reason, item_id in cases.items():
        refused = await redeem_now(sessions, member_id, item_id, f"k-{reason}")
        assert refused == Refusal(reason, refused.shortfall, refused.opens_at), reason
    short = await redeem_now(sessions, member_id, cases["not_enough_points"], "k-short")
    assert isinstance(short, Refusal)
    assert short.shortfall == 50
    assert await redeem_now(sessions, member_id, 10**9, "k-none") == Refusal("unknown")
    price = await item(sessions, points_price=120)
    assert await redeem_now(sessions, member_id, price, "k-price", expected_points=100) == Refusal(
        "price_changed"
    )
    assert await balance(sessions, member_id) == 150
    async with sessions() as session:
        assert (await session.scalars(select(Redemption))).all() == []


async def test_a_limit_per_month_opens_again_next_month(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(sessions, "o_rw_limit", [(1000, NOW, year(2028))])
    item_id = await item(sessions, limit_count=1, limit_period="month")
    assert isinstance(await redeem_now(sessions, member_id, item_id, "m1"), Redeemed)
    assert await redeem_now(sessions, member_id, item_id, "m2") == Refusal("limit_reached")
    next_month = datetime(2026, 12, 31, 16, 0, 1, tzinfo=UTC)  # 1 January, Shanghai
    assert isinstance(await redeem_now(sessions, member_id, item_id, "m3", next_month), Redeemed)


async def test_early_access_lets_the_named_tiers_redeem_before_everyone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    opens = NOW + timedelta(days=7)
    item_id = await item(sessions, name="新品", early_tiers=["gold", "diamond"], opens_at=opens)
    gold = await member_with(sessions, "o_rw_gold", [(500, NOW, year(2028))], tier="gold")
    basic = await member_with(sessions, "o_rw_basic", [(500, NOW, year(2028))])
    assert isinstance(await redeem_now(sessions, gold, item_id, "g"), Redeemed)
    assert await redeem_now(sessions, basic, item_id, "b") == Refusal(
        "not_open_yet", opens_at=opens
    )
    async with sessions() as session:
        assert [o.reward.id for o in (await catalogue(session, RULES, gold, NOW)).offers] == [
            item_id
        ]
        assert (await catalogue(session, RULES, basic, NOW)).offers == ()
    assert isinstance(await redeem_now(sessions, basic, item_id, "b2", opens), Redeemed)


async def test_the_catalogue_lists_open_items_cheapest_first_with_the_shortfall(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(sessions, "o_rw_list", [(250, NOW, year(2028))])
    dear = await item(sessions, name="贵", points_price=1000)
    cheap = await item(sessions, name="便宜", points_price=200)
    await item(sessions, name="钻石专享", tiers=["diamond"])
    await item(sessions, name="售罄", stock=0)
    async with sessions() as session:
        shown = await catalogue(session, RULES, member_id, NOW)
    assert shown.balance == 250
    assert [(o.reward.id, o.shortfall) for o in shown.offers] == [(cheap, 0), (dear, 750)]
    assert [o.reward.id for o in shown.affordable] == [cheap]


async def test_a_cancelled_fulfilment_returns_the_points_with_their_original_expiry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    soon, later = NOW + timedelta(days=20), NOW + timedelta(days=300)
    member_id = await member_with(
        sessions, "o_rw_cancel", [(60, NOW - timedelta(days=200), soon), (100, NOW, later)]
    )
    item_id = await item(sessions, stock=1, points_price=100)
    done = await redeem_now(sessions, member_id, item_id, "c1")
    assert isinstance(done, Redeemed)
    assert done.status == "pending"
    assert done.pickup_code
    async with sessions() as session:
        assert [f.pickup_code for f in await fulfilments(session)] == [done.pickup_code]
    async with sessions.begin() as session:
        closed = await close_fulfilment(
            session, done.redemption_id, "cancelled", by="shop", now=NOW + timedelta(days=1)
        )
    assert closed.status == "cancelled"
    assert not closed.replayed
    assert await balance(sessions, member_id) == 160
    async with sessions() as session:
        refund = await session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "return"))
        restored = (
            await session.scalars(select(PointLot).where(PointLot.entry_id == refund.id))
        ).all()
        assert (await session.get_one(RewardItem, item_id)).stock == 1
    assert refund.points == 100
    assert sorted((lot.remaining, lot.expires_at) for lot in restored) == [
        (40, later),
        (60, soon),
    ]
    async with sessions.begin() as session:
        again = await close_fulfilment(
            session, done.redemption_id, "cancelled", by="shop", now=NOW + timedelta(days=2)
        )
        assert again.replayed
        with pytest.raises(FulfilmentRefused):
            await close_fulfilment(session, done.redemption_id, "picked_up", by="shop", now=NOW)
    assert await balance(sessions, member_id) == 160
    assert await mismatches(sessions) == []


async def test_points_returned_after_their_expiry_expire_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(
        sessions, "o_rw_late", [(100, NOW - timedelta(days=300), NOW + timedelta(days=5))]
    )
    item_id = await item(sessions)
    done = await redeem_now(sessions, member_id, item_id, "late")
    assert isinstance(done, Redeemed)
    async with sessions.begin() as session:
        await close_fulfilment(
            session, done.redemption_id, "cancelled", by="shop", now=NOW + timedelta(days=6)
        )
    assert await balance(sessions, member_id) == 0
    assert await mismatches(sessions) == []


async def test_points_due_when_redeeming_expire_first_and_are_never_spent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    due = (80, NOW - timedelta(days=400), NOW - timedelta(hours=1))  # the nightly job not run
    live = (150, NOW - timedelta(days=10), NOW + timedelta(days=300))
    member_id = await member_with(sessions, "o_rw_due", [due, live])
    item_id = await item(sessions, points_price=200)
    short = await redeem_now(sessions, member_id, item_id, "due-1")
    assert short == Refusal("not_enough_points", shortfall=50)  # 230 shown, 150 spendable
    cheaper = await item(sessions, points_price=100)
    done = await redeem_now(sessions, member_id, cheaper, "due-2")
    assert isinstance(done, Redeemed)
    assert done.balance_after == 50
    async with sessions() as session:
        lots = (await session.scalars(select(PointLot).order_by(PointLot.earned_at))).all()
        kinds = (await session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.id))).all()
        drawn = await session.scalar(select(Redemption.drawn))
    assert [(lot.remaining, lot.expired_points) for lot in lots] == [(0, 80), (50, 0)]
    assert drawn == [[lots[1].id, 100]]  # a cancellation gives back only what was spent
    assert kinds == ["earn", "earn", "expire", "redeem"]
    assert await mismatches(sessions) == []


async def test_shipping_needs_a_tracking_number_and_a_retry_is_a_replay(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    member_id = await member_with(sessions, "o_rw_ship", [(500, NOW, year(2028))])
    item_id = await item(sessions, delivery="ship")
    done = await redeem_now(sessions, member_id, item_id, "s1")
    assert isinstance(done, Redeemed)
    async with sessions.begin() as session:
        with pytest.raises(ValueError, match="tracking_number"):
            await close_fulfilment(session, done.redemption_id, "shipped", by="shop", now=NOW)
        first = await close_fulfilment(
            session, done.redemption_id, "shipped", by="shop", now=NOW, tracking_number="SF1"
        )
        again = await close_fulfilment(
            session, done.redemption_id, "shipped", by="shop", now=NOW, tracking_number="SF1"
        )
        with pytest.raises(FulfilmentRefused):
            await close_fulfilment(
                session, done.redemption_id, "shipped", by="shop", now=NOW, tracking_number="SF2"
            )
    assert first.tracking_number == "SF1"
    assert again.replayed


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "coupon", "delivery": None}, "coupon_kind"),
        ({"kind": "coupon", "coupon_kind": "cash_10", "delivery": None, "cash_fen": 5}, "cash_fen"),
        ({"delivery": None}, "delivery"),
        ({"kind": "service"}, "delivery"),
        ({"points_price": 0}, "points_price"),
        ({"valid_from": NOW, "valid_until": NOW}, "valid_until"),
        ({"early_tiers": ["gold"]}, "early_tiers"),
        ({"image_url": "javascript:alert(1)"}, "image_url"),
    ],
)
def test_a_bad_item_names_the_field(fields: dict[str, Any], field: str) -> None:
    spec = {"name": "x", "kind": "gift", "delivery": "pickup", "points_price": 100}
    with pytest.raises(ValidationError, match=field):
        RewardSpec.model_validate({**spec, **fields})


def test_an_item_naming_what_the_programme_lacks_is_refused() -> None:
    base = {"name": "x", "points_price": 1}
    with pytest.raises(ValueError, match="coupon_kind"):
        RewardSpec(**base, kind="coupon", coupon_kind="nope").check(RULES)
    with pytest.raises(ValueError, match="tiers"):
        RewardSpec(**base, kind="service", tiers=["platinum"]).check(RULES)


# Real concurrency, PostgreSQL only: SQLite lets one writer at a time hold the whole database.


async def test_one_idempotency_key_posted_four_times_at_once_adds_one_item(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    spec = RewardSpec.model_validate(
        {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100}
    )

    async def post() -> Added:
        async with pg_sessions.begin() as session:
            return await add_item(session, spec, NOW, "pim-0042")

    added = await asyncio.gather(*(post() for _ in range(4)))
    assert sum(a.created for a in added) == 1
    assert len({a.item.id for a in added}) == 1
    async with pg_sessions() as session:
        assert len((await session.scalars(select(RewardItem))).all()) == 1


@REDEEMERS
async def test_fifty_members_racing_for_the_last_five_get_five(
    pg_sessions: async_sessionmaker[AsyncSession], redeem_now: Redeemer
) -> None:
    price = 300
    ids = [
        await member_with(pg_sessions, f"o_rw_race_{n:02d}", [(1000, NOW, year(2028))])
        for n in range(50)
    ]
    item_id = await item(pg_sessions, stock=5, points_price=price)

    async def attempt(member_id: int) -> Redeemed | Refusal:
        return await redeem_now(pg_sessions, member_id, item_id, f"race:{member_id}")

    outcomes = await asyncio.gather(*(attempt(m) for m in ids))
    winners = [m for m, o in zip(ids, outcomes, strict=True) if isinstance(o, Redeemed)]
    assert len(winners) == 5
    assert [o for o in outcomes if isinstance(o, Refusal)] == [Refusal("sold_out")] * 45
    async with pg_sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 0
        balances = dict((await session.execute(select(Member.id, Member.points_balance))).all())
    assert {m: balances[m] for m in ids} == {m: 1000 - price * (m in winners) for m in ids}
    assert sum(balances.values()) == 50 * 1000 - 5 * price
    assert await mismatches(pg_sessions) == []


@REDEEMERS
async def test_the_same_confirmation_twice_at_once_redeems_once(
    pg_sessions: async_sessionmaker[AsyncSession], redeem_now: Redeemer
) -> None:
    member_id = await member_with(pg_sessions, "o_rw_twice", [(1000, NOW, year(2028))])
    item_id = await item(pg_sessions, stock=10)
    outcomes = await asyncio.gather(
        *(redeem_now(pg_sessions, member_id, item_id, "pending:abc") for _ in range(4))
    )
    assert all(isinstance(o, Redeemed) for o in outcomes)
    assert len({o.redemption_id for o in outcomes if isinstance(o, Redeemed)}) == 1
    assert sum(not o.replayed for o in outcomes if isinstance(o, Redeemed)) == 1
    assert await balance(pg_sessions, member_id) == 900
    async with pg_sessions() as session:
        assert (await session.get_one(RewardItem, item_id)).stock == 9


@REDEEMERS
async def test_a_limit_of_one_holds_against_two_keys_at_once(
    pg_sessions: async_sessionmaker[AsyncSession], redeem_now: Redeemer
) -> None:
    member_id = await member_with(pg_sessions, "o_rw_limit1", [(1000, NOW, year(2028))])
    item_id = await item(pg_sessions, limit_count=1, limit_period="year")
    outcomes = await asyncio.gather(
        *(redeem_now(pg_sessions, member_id, item_id, f"key-{n}") for n in range(5))
    )
    assert sum(isinstance(o, Redeemed) for o in outcomes) == 1
    assert [o for o in outcomes if isinstance(o, Refusal)] == [Refusal("limit_reached")] * 4
    assert await balance(pg_sessions, member_id) == 900


@REDEEMERS
async def test_a_cancellation_racing_redemptions_loses_no_points(
    pg_sessions: async_sessionmaker[AsyncSession], redeem_now: Redeemer
) -> None:
    member_id = await member_with(pg_sessions, "o_rw_mix", [(1000, NOW, year(2028))])
    item_id = await item(pg_sessions, stock=3)
    first = await redeem_now(pg_sessions, member_id, item_id, "mix-0")
    assert isinstance(first, Redeemed)

    async def cancel() -> str:
        async with pg_sessions.begin() as session:
            await close_fulfilment(session, first.redemption_id, "cancelled", by="shop", now=NOW)
        return "cancelled"

    outcomes = await asyncio.gather(
        cancel(), *(redeem_now(pg_sessions, member_id, item_id, f"mix-{n}") for n in (1, 2, 3))
    )
    assert outcomes[0] == "cancelled"
    won = sum(isinstance(o, Redeemed) for o in outcomes[1:])
    async with pg_sessions() as session:
        stock = (await session.get_one(RewardItem, item_id)).stock
    assert won + stock == 3  # 3 at first, one taken and returned
    assert await balance(pg_sessions, member_id) == 1000 - 100 * won
    assert await mismatches(pg_sessions) == []


async def test_a_cancelled_redemption_is_neither_earned_nor_redeemed_in_the_figures(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The points a cancellation gives back read as returned, and undo the spending in the
    annual recap and the programme figures instead of counting as points earned."""
    member_id = await member_with(sessions, "o_rw_figures", [(100, NOW, NOW + timedelta(days=300))])
    item_id = await item(sessions, stock=1, points_price=100)
    done = await redeem_now(sessions, member_id, item_id, "f1")
    assert isinstance(done, Redeemed)
    async with sessions.begin() as session:
        await close_fulfilment(session, done.redemption_id, "cancelled", by="shop", now=NOW)
    async with sessions() as session:
        returned = await session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "return"))
        assert ledger_reason(returned.kind, returned.reason) == "兑换取消，积分退回"
        report = await programme_figures(session, RULES, NOW.date(), NOW + timedelta(days=1))
    redeemed = report.figures["points_redeemed"].months[f"{NOW:%Y-%m}"]
    earned = report.figures["points_earned"].months[f"{NOW:%Y-%m}"]
    assert (redeemed[0], earned[0]) == (0, 100)  # the lot credited, nothing spent in the end
    async with sessions() as session:
        await build_recaps(session, NOW.year, RULES.zone, NOW + timedelta(days=30))
        recap = await session.scalar(select(MemberRecap).where(MemberRecap.member_id == member_id))
    assert recap is not None
    assert (recap.points_earned, recap.points_used) == (100, 0)
