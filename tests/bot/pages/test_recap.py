"""The annual recap: the year's figures per member, once, behind a link only its member has."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import select

from bot import wiring
from bot.app import create_app
from bot.pages.recap import render_recap
from models.deliveries import Delivery
from models.ledger import LedgerEntry, PointLot
from models.members import Member
from models.orders import Order, Refund
from models.recap import MemberRecap, build_recaps
from models.rules import ProgrammeRules, TierRule
from models.tiers import TierChange
from scheduler.recap_push import plan_recaps
from tests.bot.api.test_api import call, follower, order
from tests.conftest import make_config
from tests.handlers.test_chat_loyalty import say
from tests.wechat_standin import WeChatStandIn

YEAR = 2025
# Everything the API records "now" is moved to this moment: noon in Shanghai, 20 December.
TARGET = datetime(2025, 12, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,
    standin: WeChatStandIn,
) -> TestClient:
    """The real app without delivery workers: planned pushes stay planned."""
    base = str(standin.server.make_url("/"))  # type: ignore[attr-defined]
    return await aiohttp_client(create_app(make_config(db_url, redis_url, base, {"workers": 0})))


async def _order(client: TestClient, order_id: str, openid: str, fen: int, paid: datetime) -> None:
    body = order(order_id, openid, amount_fen=fen) | {"paid_at": paid.isoformat()}
    status, answer = await call(client, "POST", "/orders", body)
    assert status == 201, answer


async def _seed(client: TestClient) -> dict[str, int]:
    """Members with a year of activity, recorded through the API at today's date (so points
    and tiers follow the real rules), then moved as a block into 2025. Returns member ids."""
    base = datetime.now(UTC)

    def at(moment: datetime) -> datetime:
        """When to pay now so the order lands at ``moment`` once moved."""
        return base + (moment - TARGET)

    for name in "abcdef":
        await follower(client, f"o_recap_{name}")
    # a: four ¥100 orders (silver on the 4th), then ¥5,000 at ×1.2 (gold); the first refunded.
    for n, day in enumerate((datetime(2025, 9, 11, 4), datetime(2025, 11, 10, 4))):
        await _order(client, f"A-{n}", "o_recap_a", 10_000, at(day.replace(tzinfo=UTC)))
    for n in (2, 3):
        await _order(client, f"A-{n}", "o_recap_a", 10_000, at(TARGET - timedelta(days=10)))
    await _order(client, "A-4", "o_recap_a", 500_000, at(TARGET - timedelta(days=5)))
    status, refund = await call(client, "POST", "/orders/A-0/refund", {"refund_id": "R-A-0"})
    assert (status, refund["points_reversed"]) == (200, 100)
    redeem = {"kind": "redeem", "points": -500, "reason": "兑换", "idempotency_key": "recap-a-1"}
    assert (await call(client, "POST", "/members/o_recap_a/points", redeem))[0] == 200
    # b: one ¥6,000 order: straight to gold, the year's biggest spender.
    await _order(client, "B-0", "o_recap_b", 600_000, at(TARGET - timedelta(days=40)))
    # c: only last year, at 23:30 on 31 December in Shanghai (15:30 UTC): no 2025 recap.
    await _order(client, "C-0", "o_recap_c", 20_000, at(datetime(2024, 12, 31, 15, 30, tzinfo=UTC)))
    # d: ¥300 at 00:30 on 1 January in Shanghai (still 31 December in UTC): January 2025.
    await _order(client, "D-0", "o_recap_d", 30_000, at(datetime(2024, 12, 31, 16, 30, tzinfo=UTC)))
    # e: bought last year, redeemed this year: a recap with points and no orders.
    await _order(client, "E-0", "o_recap_e", 10_000, at(datetime(2024, 12, 25, 4, tzinfo=UTC)))
    redeem = {"kind": "redeem", "points": -50, "reason": "兑换", "idempotency_key": "recap-e-1"}
    assert (await call(client, "POST", "/members/o_recap_e/points", redeem))[0] == 200
    # f follows and does nothing.

    shift = TARGET - base
    async with client.app[wiring.SESSIONS].begin() as session:
        for row in (await session.scalars(select(Order))).all():
            row.paid_at += shift
            row.created_at += shift
        for row in (await session.scalars(select(LedgerEntry))).all():
            row.created_at += shift
        for row in (await session.scalars(select(PointLot))).all():
            row.earned_at += shift
            row.expires_at += shift
        for row in (await session.scalars(select(Refund))).all():
            row.created_at += shift
        for row in (await session.scalars(select(TierChange))).all():
            row.created_at += shift
        members = (await session.execute(select(Member.openid, Member.id))).all()
    return {openid.removeprefix("o_recap_"): member_id for openid, member_id in members if openid}


async def _recaps(client: TestClient) -> dict[int, MemberRecap]:
    async with client.app[wiring.SESSIONS]() as session:
        rows = (await session.scalars(select(MemberRecap).where(MemberRecap.year == YEAR))).all()
    return {row.member_id: row for row in rows}


async def _build(client: TestClient) -> int:
    zone = client.app[wiring.CONFIG].programme.zone
    async with client.app[wiring.SESSIONS]() as session:
        # batch=2: several batches even with a handful of members.
        return await build_recaps(session, YEAR, zone, datetime.now(UTC), batch=2)


async def test_recaps_have_the_years_figures_and_are_built_once(client: TestClient) -> None:
    ids = await _seed(client)
    assert await _build(client) == 4
    recaps = await _recaps(client)
    assert set(recaps) == {ids["a"], ids["b"], ids["d"], ids["e"]}

    a = recaps[ids["a"]]
    # A-0 fully refunded: not an order, no spend, its 100 points taken back.
    assert (a.orders, a.spend_fen) == (4, 530_000)
    assert (a.points_earned, a.points_used) == (100 * 3 + 6_000, 500)
    assert (a.tier_start, a.tier_end) == ("basic", "gold")
    assert [(s["from"], s["to"]) for s in a.tier_journey or []] == [
        ("basic", "silver"),
        ("silver", "gold"),
    ]
    assert a.monthly_spend_fen == [0] * 8 + [0, 0, 10_000, 520_000]
    assert (a.spend_rank, a.ranked_members, a.spend_top_percent) == (2, 3, 67)

    b = recaps[ids["b"]]
    assert (b.orders, b.spend_fen, b.points_earned, b.points_used) == (1, 600_000, 6_000, 0)
    assert (b.tier_start, b.tier_end) == ("basic", "gold")
    assert (b.spend_rank, b.ranked_members, b.spend_top_percent) == (1, 3, 34)
    assert b.monthly_spend_fen == [0] * 10 + [600_000, 0]

    d = recaps[ids["d"]]
    assert (d.orders, d.spend_fen, d.points_earned) == (1, 30_000, 300)
    assert (d.tier_start, d.tier_end, d.tier_journey) == ("basic", "basic", [])
    assert d.monthly_spend_fen == [30_000] + [0] * 11
    assert (d.spend_rank, d.spend_top_percent) == (3, 100)

    e = recaps[ids["e"]]
    assert (e.orders, e.spend_fen, e.points_earned, e.points_used) == (0, 0, 0, 50)
    assert (e.spend_rank, e.ranked_members, e.spend_top_percent) == (None, None, None)

    tokens = {member_id: recap.token for member_id, recap in recaps.items()}
    assert all(token and len(token) >= 32 for token in tokens.values())
    assert len(set(tokens.values())) == 4
    # A rerun writes nothing and keeps every token.
    assert await _build(client) == 0
    assert {m: r.token for m, r in (await _recaps(client)).items()} == tokens


async def test_the_page_shows_the_figures_and_a_chart(client: TestClient) -> None:
    ids = await _seed(client)
    await _build(client)
    a = (await _recaps(client))[ids["a"]]
    response = await client.get(f"/recap/{a.token}")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Robots-Tag"] == "noindex"
    assert response.content_type == "text/html"
    html = await response.text()
    for shown in (
        "您的 2025 年度回顾",
        "4 笔",
        "¥5,300",
        "6,300 分",
        "500 分",
        "从【普通会员】到【金卡会员】",
        "普通会员 → 银卡会员",
        "12月",
        '<meta name="viewport"',
    ):
        assert shown in html, shown
    assert "<svg" in html
    assert "<script" not in html
    b = (await _recaps(client))[ids["b"]]
    assert "位列全体会员前 34%" in await (await client.get(f"/recap/{b.token}")).text()

    missing = await client.get("/recap/" + "x" * 32)
    malformed = await client.get("/recap/not-a-token!")
    assert (missing.status, malformed.status) == (404, 404)
    assert await missing.text() == await malformed.text()
    assert missing.headers["Cache-Control"] == "private, no-store"


async def test_plan_recaps_plans_one_push_per_member_once(client: TestClient) -> None:
    ids = await _seed(client)
    app = client.app
    args = (app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme)
    new_year = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)  # 10:00 on 1 January in Shanghai
    assert await plan_recaps(*args, new_year) == 4
    assert await plan_recaps(*args, new_year + timedelta(hours=1)) == 0
    recaps = await _recaps(client)
    async with app[wiring.SESSIONS]() as session:
        query = select(Delivery).where(Delivery.purpose == "annual_recap")
        rows = (await session.scalars(query.order_by(Delivery.member_id))).all()
    assert sorted(row.member_id for row in rows) == sorted(ids[n] for n in "abde")
    for row in rows:
        assert row.dedupe_key == f"recap:{YEAR}:{row.member_id}"
        assert (row.purpose, row.category, row.status) == ("annual_recap", "marketing", "queued")
        assert "2025年度会员回顾" in row.payload["text"]
        assert "回复“年度回顾”" in row.payload["text"]
    # One text for everyone, so members outside their window share a mass send.
    assert len({row.payload["text"] for row in rows}) == 1
    # The member's own link comes back in chat.
    async with app[wiring.SESSIONS]() as session:
        member = await session.get(Member, rows[0].member_id)
    assert member is not None
    assert member.openid is not None
    reply = await say(client, "年度回顾", openid=member.openid)
    public_url = app[wiring.CONFIG].server.public_url
    assert f"{public_url}/recap/{recaps[member.id].token}" in reply
    assert recaps[member.id].token not in (await say(client, "年度回顾", openid="o_no_recap_1"))


def test_the_page_escapes_what_it_shows() -> None:
    # Tier names are settings a marketer types; they reach the page escaped.
    rules = ProgrammeRules(
        tiers=[
            TierRule(code="basic", name="<script>alert(1)</script>", min_orders=0, multiplier=1),
            TierRule(code="gold", name="金卡&<b>", min_orders=5, multiplier=Decimal("1.5")),
        ]
    )
    recap = MemberRecap(
        year=YEAR,
        orders=1,
        spend_fen=12_345,
        points_earned=123,
        points_used=0,
        spend_top_percent=None,
        tier_start="basic",
        tier_end="gold",
        tier_journey=[{"from": "basic", "to": "gold", "at": "2025-03-01T02:00:00+00:00"}],
        monthly_spend_fen=[0, 0, 12_345] + [0] * 9,
    )
    html = render_recap(recap, rules)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "金卡&amp;&lt;b&gt;" in html
    assert "¥123.45" in html
    assert "03月01日" in html
