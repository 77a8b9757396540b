"""The question a member has open (a rating, or the comment after one), kept in Redis.

One key per member, ``question:<openid>``, holding the question as JSON with its expiry (24 h
by default). The webhook's gate reads it with the message's other Redis work, so a member with
no open question costs nothing extra. Answering takes the question away atomically: of two
answers racing, one wins and the other finds it gone. A scored question stays a short while
marked answered, so that a second score sent with the first (a double tap, a retyped digit)
is thanked rather than read as a message nobody asked for.
"""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from models.ratings import OpenQuestion

QUESTION_KEY = "question:{openid}"
# Seconds an answered question is kept marked answered.
ANSWERED_SECONDS = 120

# Remove, or replace, the question only if it is still the one we read. The replacement keeps
# the expiry unless ARGV[3] gives one.
_TAKE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
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
        next_raw = then.dumps() if then is not None else ""
        return await self._swap(openid, seen, next_raw, "")

    async def answered(self, openid: str, seen: OpenQuestion) -> bool:
        """Close ``seen`` as answered (marked so for ``ANSWERED_SECONDS``, or until another
        question opens) if it is still open; False when another answer got there first."""
        marked = replace(seen, answered=True).dumps()
        return await self._swap(openid, seen, marked, str(ANSWERED_SECONDS))

    async def _swap(self, openid: str, seen: OpenQuestion, then: str, ttl: str) -> bool:
        key = QUESTION_KEY.format(openid=openid)
        return bool(await self._take(keys=[key], args=[seen.dumps(), then, ttl]))

    async def reprompted(self, openid: str, seen: OpenQuestion) -> bool:
        """Mark that the member was reminded once (the next miss lets the question lapse)."""
        return await self.take(openid, seen, replace(seen, reprompted=True))
