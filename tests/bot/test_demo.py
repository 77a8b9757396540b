"""The demo brand (``python -m bot demo``): loaded in under 30 s into an empty database, with
balancing ledgers, the ten chat members at their tiers, every part of the programme at work,
and a dashboard that has something true to show; never next to real members."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from bot import wiring
from models.base import utcnow
from models.campaigns import CampaignMember
from models.conversations import Conversation
from models.coupons import Coupon
from models.figures import FIGURES
from models.members import Member
from models.orders import Order
from models.ratings import Rating
from models.referrals import Referral
from tests.bot.console.test_console import add_staff, login
from tests.helpers import bot_config, run_bot

GOAL_SECONDS = 30.0


async def test_the_demo_loads_a_brand_at_work_and_the_dashboard_shows_it(
    app_factory: Callable[..., Any], db_url: str, redis_url: str, tmp_path: Path
) -> None:
    client = await app_factory()
    config = bot_config(tmp_path, db_url, redis_url)
    code, out, err = await run_bot(config, "demo", "--if-empty")
    assert code == 0, err
    loaded = re.fullmatch(r"demo data: 3,010 members loaded \((\d+\.\d) s\)", out.splitlines()[0])
    assert loaded, out
    assert float(loaded[1]) < GOAL_SECONDS
    code, out, _ = await run_bot(config, "demo", "--if-empty")
    assert (code, out.strip()) == (0, "demo data: database not empty")
    code, out, _ = await run_bot(config, "ledger", "verify")
    assert (code, out.strip()) == (0, "ledger verify: every balance matches its ledger and lots")

    async with client.app[wiring.SESSIONS]() as session:
        tiers = dict(
            (
                await session.execute(
                    text(
                        "SELECT openid, tier FROM members WHERE openid IN ("
                        "'o_demo_member_01', 'o_demo_member_02', 'o_demo_member_03')"
                    )
                )
            ).all()
        )
        assert tiers == {
            "o_demo_member_01": "diamond",
            "o_demo_member_02": "silver",
            "o_demo_member_03": "basic",
        }

        async def groups(column: Any) -> set[Any]:
            return set((await session.scalars(select(column).distinct())).all())

        assert {"wechat_mall", "store", "tmall", "jd"} <= await groups(Order.channel)
        assert len(await groups(Order.category)) >= 4
        assert await session.scalar(select(func.count()).where(Order.refunded_fen > 0)) > 0
        assert {"basic", "silver", "gold", "diamond"} <= await groups(Member.tier)
        assert {"at_risk", "dormant", "other"} <= await groups(Member.segment)
        assert {"joined", "pending", "rewarded", "cancelled"} <= await groups(Referral.status)
        assert {"redeemed", "expired"} <= await groups(Coupon.status)
        assert {"A", "B", "holdout"} <= await groups(CampaignMember.variant)
        assert await session.scalar(select(func.count()).where(Rating.comment.is_not(None))) > 0
        waiting = select(func.count()).where(Conversation.status == "queued")
        assert await session.scalar(waiting) == 4

    await add_staff(client, "mia", "marketer")
    assert await login(client, "mia") == 303
    # Last month: a whole month of the brand's history, whatever day the test runs.
    today = utcnow().astimezone(client.app[wiring.CONFIG].programme.zone).date()
    last_month = today.replace(day=1) - timedelta(days=1)
    response = await client.get(f"/console/dashboard?month={last_month:%Y-%m}")
    assert response.status == 200
    page = await response.text()
    assert page.count("data:image/svg+xml;base64,") == len(FIGURES)
    for code in ("repurchase_12m", "aov", "csat", "nps", "winback", "benefit_use"):
        row = re.search(rf'<tr data-figure="{code}">.*?class="actual">([^<]+)<', page, re.S)
        assert row, code
        assert row[1] != "—", code


async def test_the_demo_never_loads_next_to_real_members(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    code, out, _ = await run_bot(config, "demo", "--members", "0")
    assert (code, out.splitlines()[0].split(" (")[0]) == (0, "demo data: 10 members loaded")
    code, out, err = await run_bot(config, "demo")
    assert code == 2
    assert out == ""
    assert err.strip() == "demo: the database has 10 members; the demo loads only into an empty one"
    code, _, err = await run_bot(config, "demo", "--members", "-1")
    assert (code, err.strip()) == (2, "demo: --members cannot be negative")
