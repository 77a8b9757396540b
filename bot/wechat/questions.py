"""The question a member has open (a rating, or the comment after one), kept in Redis.

One key per member, ``question:<openid>``, holding the question as JSON with its expiry (24 h
by default). The webhook's gate reads it with the message's other Redis work, so a member with
no open question costs nothing extra. Answering takes the question away atomically: of two
answers racing, one wins and the other finds it gone.
"""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from models.ratings import OpenQuestion

QUESTION_KEY = "question:{openid}"

# Remove (or replace, keeping the expiry) the question only if it is still the one we read.
_TAKE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


class Questions:
    """Open, read and take members' open questions."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._take = redis.register_script(_TAKE)

    async def open(self, openid: str, question: OpenQuestion) -> None:
        """Ask ``question`` (it replaces any question still open)."""
        key = QUESTION_KEY.format(openid=openid)
        await self._redis.set(key, question.dumps(), ex=self._ttl)

    async def take(self, openid: str, seen: OpenQuestion, then: OpenQuestion | None = None) -> bool:
        """Close ``seen`` (or put ``then`` in its place, same expiry) if it is still open;
        False when another answer got there first."""
        key = QUESTION_KEY.format(openid=openid)
        next_raw = then.dumps() if then is not None else ""
        return bool(await self._take(keys=[key], args=[seen.dumps(), next_raw]))

    async def reprompted(self, openid: str, seen: OpenQuestion) -> bool:
        """Mark that the member was reminded once (the next miss lets the question lapse)."""
        return await self.take(openid, seen, replace(seen, reprompted=True))
