"""The gate every inbound message passes once, in one Redis round trip.

It dedupes WeChat's retries (MsgId, or FromUserName+CreateTime+Event for events), opens the
member's customer-service window, queues the interaction time for the database flush, and
returns the member id cached from an earlier message (so a known member's message needs no SQL
before its handler runs), the member's open questions (a rating: bot/wechat/questions.py; the
bot's own, such as a redemption awaiting 「确认」: handlers/clarify.py), if any, and what
the points cache holds for the member (bot/wechat/points_cache.py): 积分, the most asked question,
then needs no round trip of its own. A retry finds the first attempt's outcome: its reply,
``success``, or "still working".

The webhook's calls take a ``deadline`` (the event loop's clock) inside its reply budget: past
it, redis-py's TimeoutError, and the webhook answers without waiting any longer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bot.wechat.handoff import HANDOFF_KEY
from bot.wechat.points_cache import EPOCH_KEY, GENERATION_PREFIX, SUMMARY_PREFIX, Lookup, looked_up
from bot.wechat.questions import QUESTION_KEY
from bot.wechat.redis_pipe import LuaScript, RedisPipe
from handlers.clarify import ASKED_KEY
from handlers.fallback import STREAK_KEY

PENDING = b"P"  # the first attempt is still working
ASYNC = b"A"  # answered "success"; the reply goes out by customer-service message
REPLY = b"R"  # followed by the rendered reply XML ("" for no reply)

WINDOW_KEY = "cs:window:{openid}"
PENDING_INTERACTIONS = "interactions:pending"
MEMBER_ID_KEY = "member:id:{openid}"
# Ids of members who wrote recently stay cached; quiet members fall out of Redis.
MEMBER_ID_TTL = 7 * 24 * 3600
# A member's message opens 48 hours and 5 replies; a click, follow or scan 1 minute and 3.
MESSAGE_WINDOW = (48 * 3600, 5)
EVENT_WINDOW = (60, 3)
# How often a retry looks whether the first attempt has finished.
_POLL = 0.02

# Redis's cost per message is mostly the commands it runs (under load it reads several messages
# per wake-up), so the script runs as few as it can: the member's id and state in one MGET, and
# no TTL check for a member's message, whose window is the longest there is.
# The points lookup is a few hundred bytes more per message, read whatever the message asks: its
# intent is known only after the gate (an open question or a person's conversation changes how
# the words are read), and a second round trip for 积分 costs far more than the read.
_ADMIT = (
    """
local seen = redis.call('GET', KEYS[1])
if seen then return {seen, ''} end
redis.call('SET', KEYS[1], 'P', 'EX', ARGV[1])
local state = redis.call('MGET', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
local member_id = state[1]
if member_id then redis.call('EXPIRE', KEYS[4], ARGV[6]) end
if ARGV[4] ~= '0' then
  local ttl = tonumber(ARGV[4])
  if ARGV[7] == '1' or ttl > redis.call('TTL', KEYS[2]) then
    redis.call('HSET', KEYS[2], 'opened_at', ARGV[2], 'quota', ARGV[5], 'sent', 0)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
end
local points = {}
if member_id then
  points = redis.call('MGET', '"""
    + SUMMARY_PREFIX
    + """' .. member_id, '"""
    + GENERATION_PREFIX
    + """' .. member_id, '"""
    + EPOCH_KEY
    + """')
end
return {'', member_id or '', state[2] or '', state[3] or '', state[4] or '', points,
        state[5] or ''}
"""
)


@dataclass(frozen=True, slots=True)
class Admission:
    """``first`` for a new message, else what the earlier attempt left; the cached member id;
    the member's open question (raw JSON, empty if none); the conversation a person has with
    them (bot/wechat/handoff.py), if any; how many messages in a row the bot did not understand;
    the points cache's lookup of the member (None if the member id is not cached); the bot's
    own question to the member (handlers/clarify.py: raw JSON, empty if none)."""

    first: bool
    earlier: bytes = b""
    member_id: int | None = None
    question: bytes = b""
    handoff: int | None = None
    not_understood: int = 0
    points: Lookup | None = None
    asked: bytes = b""


def dedupe_key(openid: str, msg_id: int, created: int, event: str | None, key: str) -> str:
    """MsgId for messages; for events, sender and time (WeChat's advice) plus event name, key
    and MsgID, so two different buttons pressed in one second are two events."""
    if event is None and msg_id:
        return f"dedupe:msg:{msg_id}"
    return f"dedupe:evt:{openid}:{created}:{event or ''}:{key}:{msg_id}"


class InboundGate:
    """Dedupe and interaction record, shared by every web process through Redis."""

    def __init__(self, redis: RedisPipe, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._admit = LuaScript(_ADMIT)

    async def admit(
        self, key: str, openid: str, window: tuple[int, int] | None, deadline: float
    ) -> Admission:
        """Claim ``key`` for this attempt; record the interaction when ``window`` is given."""
        ttl, quota = window or (0, 0)
        earlier, member_id, *state = await self._redis.run_script(
            self._admit,
            keys=[
                key,
                WINDOW_KEY.format(openid=openid),
                PENDING_INTERACTIONS,
                MEMBER_ID_KEY.format(openid=openid),
                QUESTION_KEY.format(openid=openid),
                HANDOFF_KEY.format(openid=openid),
                STREAK_KEY.format(openid=openid),
                ASKED_KEY.format(openid=openid),
            ],
            args=[
                self._ttl,
                int(time.time()),
                openid,
                ttl,
                quota,
                MEMBER_ID_TTL,
                int(window == MESSAGE_WINDOW),
            ],
            deadline=deadline,
        )
        if not state:  # a retry: the script stopped at the dedupe key
            return Admission(first=False, earlier=earlier)
        question, handoff, streak, points, asked = state
        known = int(member_id) if member_id else None
        return Admission(
            first=not earlier,
            earlier=earlier,
            member_id=known,
            question=question,
            handoff=int(handoff) if handoff else None,
            not_understood=int(streak) if streak else 0,
            points=looked_up(known, *points) if known is not None else None,
            asked=asked,
        )

    async def remember_member(self, openid: str, member_id: int) -> None:
        """Cache the member id for this openid (it never changes for a member)."""
        await self._redis.execute(
            "SET", MEMBER_ID_KEY.format(openid=openid), member_id, "EX", MEMBER_ID_TTL
        )

    def remember_reply(self, key: str, reply_xml: str) -> asyncio.Future[Any]:
        """Keep the reply so that a retry gets the same answer without running again. Sent
        at once and not waited for (no deadline: nobody waits): a retry reaching this process
        later is behind it on the same connection, and one reaching another process before it
        lands waits for the outcome as for a first attempt still working. The future is
        Redis's answer."""
        reply = REPLY + reply_xml.encode()
        return self._redis.post("SET", key, reply, "EX", self._ttl)

    def mark_async(self, key: str) -> asyncio.Future[Any]:
        """The webhook answered ``success``; retries should too (sent as ``remember_reply``)."""
        return self._redis.post("SET", key, ASYNC, "EX", self._ttl)

    async def wait_for_outcome(self, key: str, deadline: float) -> bytes:
        """Poll until the first attempt finishes or ``deadline`` passes (then PENDING)."""
        loop = asyncio.get_running_loop()
        while loop.time() + _POLL < deadline:
            await asyncio.sleep(_POLL)
            value = await self._redis.execute("GET", key, deadline=deadline)
            if value != PENDING:
                return value or ASYNC
        return PENDING
