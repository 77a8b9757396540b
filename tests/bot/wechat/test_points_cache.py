"""积分 is answered from the Redis points cache: every ledger change must show at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import wiring
from bot.wechat import redis_pipe
from bot.wechat.points_cache import BULK, EPOCH_KEY
from models.ledger import PointsSummary
from models.members import find_member
from scheduler.jobs import JOBS, JobContext
from tests.bot.api.test_api import call, follower, order
from tests.handlers.test_chat_loyalty import OPENID, say


async def _member_id(client: TestClient) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        member = await find_member(session, OPENID)
    assert member is not None
    return member.id


async def _cached(client: TestClient, member_id: int) -> bool:
    return bool(await client.app[wiring.REDIS].exists(f"points:summary:{member_id}"))


async def test_every_ledger_change_shows_in_the_next_answer(client: TestClient) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("PC-1", amount_fen=20_000))
    member_id = await _member_id(client)
    assert (await say(client, "积分")).startswith("您当前可用积分：200 分")
    assert await _cached(client, member_id)

    await call(client, "POST", "/orders", order("PC-2", amount_fen=5_000))
    assert (await say(client, "积分")).startswith("您当前可用积分：250 分")

    redeem = {"kind": "redeem", "points": -120, "reason": "兑换", "idempotency_key": "pc-redeem-1"}
    assert (await call(client, "POST", f"/members/{OPENID}/points", redeem))[0] == 200
    assert (await say(client, "积分")).startswith("您当前可用积分：130 分")

    refund = {"refund_id": "PC-2-R"}
    assert (await call(client, "POST", "/orders/PC-2/refund", refund))[0] == 200
    reply = await say(client, "积分")
    assert reply.startswith("您当前可用积分：80 分")
    assert reply.splitlines()[2].endswith("-50")  # the refund is the latest change


async def test_the_expiry_job_is_seen_at_once(client: TestClient) -> None:
    await follower(client, OPENID)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    await call(client, "POST", "/orders", order("PC-OLD", amount_fen=7_000) | {"paid_at": old})
    await call(client, "POST", "/orders", order("PC-NEW", amount_fen=3_000))
    assert (await say(client, "积分")).startswith("您当前可用积分：100 分")
    config = client.app[wiring.CONFIG]
    context = JobContext(
        client.app[wiring.SESSIONS], config.programme, client.app[wiring.OUTBOX], datetime.now(UTC)
    )
    outcome = await JOBS["expire-points"].run(context)
    assert outcome == "70 points expired"
    await client.app[wiring.POINTS].drain()
    reply = await say(client, "积分")
    assert reply.startswith("您当前可用积分：30 分")
    assert "积分到期 -70" in reply


async def test_a_change_to_many_members_invalidates_every_summary(client: TestClient) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("PC-B", amount_fen=4_000))
    member_id = await _member_id(client)
    await say(client, "积分")
    points = client.app[wiring.POINTS]
    assert (await points.lookup(member_id)).summary is not None
    # Another set of members, large enough for the epoch bump instead of per-member keys.
    await points.forget(range(10**9, 10**9 + BULK + 1))
    assert int(await client.app[wiring.REDIS].get(EPOCH_KEY)) == 1
    assert (await points.lookup(member_id)).summary is None


async def test_a_read_that_raced_a_commit_is_not_cached(client: TestClient) -> None:
    await follower(client, OPENID)
    member_id = await _member_id(client)
    points = client.app[wiring.POINTS]
    now = datetime.now(UTC)
    seen = await points.lookup(member_id)
    stale = PointsSummary(balance=999, bound=False, expiring=[], recent=[])
    # The ledger moved (and was forgotten) between the reader's lookup and its store.
    await points.forget([member_id])
    assert not await points.store(member_id, stale, seen, now)
    assert (await points.lookup(member_id)).summary is None
    fresh = await points.lookup(member_id)
    assert await points.store(member_id, stale, fresh, now)
    assert (await points.lookup(member_id)).summary == stale


async def test_no_summary_outlives_the_local_day(client: TestClient) -> None:
    await follower(client, OPENID)
    member_id = await _member_id(client)
    points = client.app[wiring.POINTS]
    # 23:59:30 in Shanghai: lots expire at midnight, so the summary must go by then.
    late = datetime(2026, 11, 23, 15, 59, 30, tzinfo=UTC)
    summary = PointsSummary(balance=5, bound=True, expiring=[], recent=[])
    assert await points.store(member_id, summary, await points.lookup(member_id), late)
    ttl = await client.app[wiring.REDIS].ttl(f"points:summary:{member_id}")
    assert 0 < ttl <= 30


async def test_a_known_members_points_come_with_the_gates_round_trip(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("PC-G", amount_fen=6_000))
    assert (await say(client, "积分")).startswith("您当前可用积分：60 分")  # now cached
    sent: list[str] = []
    send = redis_pipe._send

    def recording(protocol: Any, *command: Any, **options: Any) -> Any:
        sent.append(str(command[0]))
        return send(protocol, *command, **options)

    monkeypatch.setattr(redis_pipe, "_send", recording)
    assert (await say(client, "积分")).startswith("您当前可用积分：60 分")
    assert sent == ["EVALSHA", "SET"]  # the gate (with the points lookup), the reply stored

    # A change committed after the gate looked is seen by the next message, not cached over.
    await call(client, "POST", "/orders", order("PC-H", amount_fen=1_000))
    assert (await say(client, "积分")).startswith("您当前可用积分：70 分")
