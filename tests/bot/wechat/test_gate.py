"""The inbound gate's one script (bot/wechat/gate.py) and the interaction flush's removal
(bot/wechat/interactions.py), on a real Redis: the server tests run on and the 6.2 the service
embeds, since both scripts use commands of their own versions (MGET in a script, ZMSCORE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.wechat.gate import EVENT_WINDOW, MEMBER_ID_TTL, MESSAGE_WINDOW, PENDING, InboundGate
from bot.wechat.interactions import _REMOVE_IF_UNCHANGED
from bot.wechat.redis_pipe import RedisPipe

OPENID = "o_gate_0000000001"
WINDOW = f"cs:window:{OPENID}"


@pytest.fixture(params=["redis_url", "embedded_redis_url"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Redis, RedisPipe]]:
    client = Redis.from_url(request.getfixturevalue(request.param))
    await client.flushall()
    pipe = RedisPipe.like(client)
    yield client, pipe
    await pipe.close()
    await client.aclose()


async def _admit(gate: InboundGate, key: str, window: tuple[int, int] | None):
    return await gate.admit(key, OPENID, window, asyncio.get_running_loop().time() + 4)


async def test_a_message_opens_the_full_window_and_an_event_never_shortens_it(
    server: tuple[Redis, RedisPipe],
) -> None:
    redis, pipe = server
    gate = InboundGate(pipe, 600)
    await _admit(gate, "dedupe:msg:1", MESSAGE_WINDOW)
    await redis.hset(WINDOW, "sent", 4)  # four replies spent since
    await _admit(gate, "dedupe:evt:1", EVENT_WINDOW)  # a click: 60 s would shorten it
    assert 48 * 3600 - 5 <= await redis.ttl(WINDOW) <= 48 * 3600
    assert await redis.hget(WINDOW, "sent") == b"4"
    # The member writes again: the window and its five replies start over, at once.
    await _admit(gate, "dedupe:msg:2", MESSAGE_WINDOW)
    assert await redis.hget(WINDOW, "sent") == b"0"
    assert await redis.hget(WINDOW, "quota") == b"5"
    assert await redis.zscore("interactions:pending", OPENID) is not None


async def test_a_click_without_a_window_opens_a_short_one(server: tuple[Redis, RedisPipe]) -> None:
    redis, pipe = server
    await _admit(InboundGate(pipe, 600), "dedupe:evt:2", EVENT_WINDOW)
    assert 55 <= await redis.ttl(WINDOW) <= 60
    assert await redis.hget(WINDOW, "quota") == b"3"


async def test_the_admission_carries_the_members_state_and_keeps_its_id(
    server: tuple[Redis, RedisPipe],
) -> None:
    redis, pipe = server
    gate = InboundGate(pipe, 600)
    unknown = await _admit(gate, "dedupe:msg:3", MESSAGE_WINDOW)
    assert (unknown.first, unknown.member_id, unknown.points) == (True, None, None)
    await redis.set(f"member:id:{OPENID}", 42, ex=60)
    await redis.set(f"question:{OPENID}", b'{"kind":"rating"}')
    await redis.set(f"handoff:{OPENID}", 7)
    await redis.set(f"fallback:streak:{OPENID}", 2)
    await redis.set(f"asked:{OPENID}", b'{"redeem":1}')
    known = await _admit(gate, "dedupe:msg:4", MESSAGE_WINDOW)
    assert known.first
    assert known.member_id == 42
    assert (known.question, known.handoff, known.not_understood, known.asked) == (
        b'{"kind":"rating"}',
        7,
        2,
        b'{"redeem":1}',
    )
    assert known.points is not None
    assert known.points.member_id == 42
    # A member who writes keeps their id cached for another week.
    assert await redis.ttl(f"member:id:{OPENID}") > MEMBER_ID_TTL - 5
    # WeChat's retry of the same message finds the first attempt still working.
    retry = await _admit(gate, "dedupe:msg:4", MESSAGE_WINDOW)
    assert (retry.first, retry.earlier) == (False, PENDING)


async def test_the_flush_removes_only_what_did_not_change_meanwhile(
    server: tuple[Redis, RedisPipe],
) -> None:
    redis, pipe = server
    pending = "interactions:pending"
    await redis.zadd(pending, {"o_a": 100, "o_b": 200, "o_c": 300})
    # What the flush read and wrote: a, b and a member gone meanwhile (another flush took it).
    flushed = ["o_a", 100, "o_b", 150, "o_gone", 50]
    removed = await pipe.run_script(_REMOVE_IF_UNCHANGED, ["interactions:pending"], flushed)
    assert removed == 1
    # b wrote again while its older time was being stored: kept for the next flush.
    assert await redis.zrange(pending, 0, -1, withscores=True) == [(b"o_b", 200.0), (b"o_c", 300.0)]
    members = [f"o_{i}" for i in range(3000)]
    await redis.zadd(pending, dict.fromkeys(members, 400))
    batch = [part for member in members for part in (member, 400)]
    assert await pipe.run_script(_REMOVE_IF_UNCHANGED, [pending], batch) == 3000
    assert await redis.zcard(pending) == 2
