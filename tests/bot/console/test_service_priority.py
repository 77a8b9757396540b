"""The priority lane (issue 20, item 1): the queue orders by tier priority, then waiting time;
the member hears their honest place; auto-assignment follows the same order and gives the top
tier to its dedicated agents first; after hours the conversation waits for the morning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from sqlalchemy import select, update

from bot import wiring
from bot.config import Config
from bot.console.settings import ConsoleConfig
from bot.console.sweeps import ConsoleSweeps
from bot.wechat.handoff import HANDOFF_KEY, Handoffs
from models.conversations import QueuePriority, open_conversation, queue_position
from models.members import Member
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import add_staff, conversation_of, login, say

PRIORITY = {"priority_tiers": ["diamond", "gold"]}


async def member_of_tier(client: TestClient, openid: str, tier: str) -> None:
    await follower(client, openid)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(update(Member).where(Member.openid == openid).values(tier=tier))


def sweeps_of(client: TestClient) -> ConsoleSweeps:
    return ConsoleSweeps(
        client.app[wiring.SESSIONS],
        Handoffs(client.app[wiring.REDIS]),
        client.app[wiring.CONFIG].console,
    )


async def test_priority_tiers_go_first_and_members_hear_their_honest_place(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(console={"assignment": "claim", **PRIORITY})
    await member_of_tier(client, "o_prio_basic0001", "basic")
    await member_of_tier(client, "o_prio_basic0002", "basic")
    await member_of_tier(client, "o_prio_gold00001", "gold")
    await member_of_tier(client, "o_prio_diamond01", "diamond")
    assert "客服马上就来" in await say(client, "人工", "o_prio_basic0001")
    assert "前面还有1位" in await say(client, "人工", "o_prio_basic0002")
    # Gold waited less than both basic members but is served before them.
    assert "客服马上就来" in await say(client, "人工", "o_prio_gold00001")
    assert "客服马上就来" in await say(client, "人工", "o_prio_diamond01")
    # Asking again while waiting: the place now, with the two priority members ahead.
    assert "前面还有2位" in await say(client, "人工", "o_prio_basic0001")
    assert "前面还有1位" in await say(client, "人工", "o_prio_gold00001")

    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    queue = await (await client.get("/console/api/queue")).json()
    rows = [(c["tier"], c["priority"]) for c in queue["conversations"]]
    assert rows == [
        ("钻石会员", "钻石会员优先"),
        ("金卡会员", "金卡会员优先"),
        ("普通会员", None),
        ("普通会员", None),
    ]


async def test_auto_assignment_follows_the_order_and_the_dedicated_agent(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(
        console={"max_open_per_agent": 1, "dedicated_agents": ["agent_vip"], **PRIORITY}
    )
    # The ordinary agent has the lower id: least-loaded-then-id alone would give it the diamond.
    li = await add_staff(client, "agent_li", "agent", online=True)
    vip = await add_staff(client, "agent_vip", "agent", online=True)
    await member_of_tier(client, "o_auto_basic0001", "basic")
    await member_of_tier(client, "o_auto_diamond01", "diamond")
    await member_of_tier(client, "o_auto_gold00001", "gold")
    for openid in ("o_auto_basic0001", "o_auto_diamond01", "o_auto_gold00001"):
        await say(client, "人工", openid)
    await sweeps_of(client).sweep()
    diamond = await conversation_of(client, "o_auto_diamond01")
    gold = await conversation_of(client, "o_auto_gold00001")
    basic = await conversation_of(client, "o_auto_basic0001")
    # Diamond to its dedicated agent, gold next to whoever is free; basic, first in, waits.
    assert (diamond.assigned_to, gold.assigned_to, basic.assigned_to) == (vip, li, None)


async def test_the_top_tier_goes_to_another_agent_when_the_dedicated_one_is_full(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(
        console={"max_open_per_agent": 1, "dedicated_agents": ["agent_vip"], **PRIORITY}
    )
    li = await add_staff(client, "agent_li", "agent", online=True)
    vip = await add_staff(client, "agent_vip", "agent", online=True)
    await member_of_tier(client, "o_full_diamond01", "diamond")
    await member_of_tier(client, "o_full_diamond02", "diamond")
    await say(client, "人工", "o_full_diamond01")
    await say(client, "人工", "o_full_diamond02")
    await sweeps_of(client).sweep()
    assigned = [
        (await conversation_of(client, o)).assigned_to
        for o in ("o_full_diamond01", "o_full_diamond02")
    ]
    assert assigned == [vip, li]


async def test_after_hours_the_member_is_told_when_and_waits_for_the_morning(
    app_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 22:00 in Shanghai; an agent left "online" overnight and a claim timeout longer than
    # the idle return: the conversation must still be there, queued, in the morning.
    client = await app_factory(
        console={
            "service_hours_start": "09:00",
            "service_hours_end": "21:00",
            "claim_timeout_minutes": 60,
            "idle_minutes": 30,
        }
    )
    evening = datetime(2026, 12, 9, 14, 0, tzinfo=UTC)
    monkeypatch.setattr("handlers.handoff.utcnow", lambda: evening)
    await add_staff(client, "agent_night", "agent", online=True)
    await member_of_tier(client, "o_night_member01", "basic")
    await member_of_tier(client, "o_night_member02", "basic")
    assert "前面" not in await say(client, "人工", "o_night_member01")
    reply = await say(client, "人工", "o_night_member02")
    assert "服务时间是每天09:00-21:00" in reply
    assert "客服将于明天09:00上线" in reply
    assert "您前面还有1位" in reply
    openid = "o_night_member01"
    sweeps = sweeps_of(client)
    for minutes in (0, 5, 40, 70, 75, 5 * 60, 10 * 60 + 59):
        await sweeps.sweep(evening + timedelta(minutes=minutes))
        conversation = await conversation_of(client, openid)
        assert conversation.status in ("queued", "assigned"), minutes
        assert await client.app[wiring.REDIS].exists(HANDOFF_KEY.format(openid=openid))
    # A message at night still reaches the conversation, not the bot.
    assert await say(client, "有人吗", openid) == "success"


async def test_before_the_day_starts_the_member_hears_today(
    app_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await app_factory(
        console={"service_hours_start": "09:00", "service_hours_end": "21:00"}
    )
    early = datetime(2026, 12, 9, 22, 30, tzinfo=UTC)  # 06:30 on the 10th in Shanghai
    monkeypatch.setattr("handlers.handoff.utcnow", lambda: early)
    await follower(client, "o_early_member01")
    assert "客服将于今天09:00上线" in await say(client, "人工", "o_early_member01")


async def test_the_position_breaks_ties_by_id_on_both_lanes(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory()
    at = datetime(2026, 12, 9, 2, 0, tzinfo=UTC)
    priority = QueuePriority(("diamond",))
    tiers = {"o_tie_member0001": "basic", "o_tie_member0002": "diamond", "o_tie_member0003": ""}
    for openid, tier in tiers.items():
        await member_of_tier(client, openid, tier or "basic")
    places = {}
    async with client.app[wiring.SESSIONS].begin() as session:
        queued = []
        for openid in tiers:  # all queued at the same instant
            member_id = await session.scalar(select(Member.id).where(Member.openid == openid))
            assert member_id is not None
            conversation, _ = await open_conversation(session, member_id, "asked", at)
            queued.append((openid, conversation))
        for openid, conversation in queued:
            places[openid] = await queue_position(session, conversation, priority)
    assert places == {"o_tie_member0002": 1, "o_tie_member0001": 2, "o_tie_member0003": 3}


def test_the_priority_lane_is_a_setting_fact() -> None:
    config = ConsoleConfig(priority_tiers=["diamond"])
    assert config.has_priority_lane("diamond")
    assert not config.has_priority_lane("gold")
    assert not ConsoleConfig(priority_tiers=[]).has_priority_lane("diamond")


def test_an_unknown_priority_tier_is_refused() -> None:
    with pytest.raises(ValidationError, match="priority_tiers: no tier platinum"):
        Config.model_validate(
            {
                "wechat": {"appid": "wx1234", "secret": "s3cret-value", "token": "mytoken"},
                "api": {"token": "0123456789abcdef0123"},
                "console": {"priority_tiers": ["platinum"]},
            }
        )


def test_unset_the_lane_is_the_programmes_highest_tier() -> None:
    """A brand with tiers of its own keeps a priority lane without naming it."""
    tiers = [
        {"code": "member", "name": "会员", "min_orders": 0, "multiplier": "1"},
        {"code": "vip", "name": "贵宾", "min_orders": 5, "multiplier": "1.5"},
    ]
    base = {
        "wechat": {"appid": "wx1234", "secret": "s3cret-value", "token": "mytoken"},
        "api": {"token": "0123456789abcdef0123"},
    }
    config = Config.model_validate(base | {"programme": {"tiers": tiers}})
    assert config.console.priority_tiers == ["vip"]
    assert Config.model_validate(base).console.priority_tiers == ["diamond"]
    chosen = base | {"programme": {"tiers": tiers}, "console": {"priority_tiers": []}}
    assert Config.model_validate(chosen).console.priority_tiers == []  # no lane, as asked
