"""Moves members' last-interaction times from Redis to the database in batches.

The webhook only adds to a Redis sorted set (openid → time); writing a row per message on the
hot path would cost more than the rest of the request. A flush is idempotent and safe to run
from several processes at once.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tasks import every
from bot.wechat.gate import PENDING_INTERACTIONS
from bot.wechat.redis_pipe import LuaScript, RedisPipe
from models.members import record_interactions

log = logging.getLogger(__name__)

# Remove an entry only if no newer interaction arrived while we were writing it. Two commands
# for the whole batch (ZMSCORE needs Redis 6.2), not two per member: Redis's cost is mostly the
# commands it runs. A batch is at most a few thousand members, well inside what ``unpack``
# can spread.
_REMOVE_IF_UNCHANGED = LuaScript("""
local members = {}
for i = 1, #ARGV, 2 do members[#members + 1] = ARGV[i] end
local scores = redis.call('ZMSCORE', KEYS[1], unpack(members))
local unchanged = {}
for i, score in ipairs(scores) do
  if score and tonumber(score) == tonumber(ARGV[2 * i]) then
    unchanged[#unchanged + 1] = members[i]
  end
end
if #unchanged == 0 then return 0 end
return redis.call('ZREM', KEYS[1], unpack(unchanged))
""")


class InteractionFlusher:
    """Flushes pending interaction times, ``batch`` members per statement."""

    def __init__(
        self, pipe: RedisPipe, sessions: async_sessionmaker[AsyncSession], batch: int = 1000
    ) -> None:
        """``pipe``: the webhook's pipelined connection, which packs a batch's thousands of
        arguments in C (redis-py's encoders cost a few microseconds per member)."""
        self._pipe = pipe
        self._sessions = sessions
        self._batch = batch

    async def flush(self) -> int:
        """Write everything pending now; return how many members were written."""
        written = 0
        while True:
            flat = await self._pipe.execute(
                "ZRANGE", PENDING_INTERACTIONS, 0, self._batch - 1, "WITHSCORES"
            )
            if not flat:
                return written
            # Members and scores alternate; the scores go back to Redis as it sent them.
            entries = list(zip(flat[::2], flat[1::2], strict=True))
            latest = {openid.decode(): float(score) for openid, score in entries}
            async with self._sessions() as session:
                await record_interactions(session, latest)
                await session.commit()
            args = [part for entry in entries for part in entry]
            await self._pipe.run_script(_REMOVE_IF_UNCHANGED, [PENDING_INTERACTIONS], args)
            written += len(entries)
            if len(entries) < self._batch:
                return written

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Flush every ``interval`` seconds until ``stop`` is set, then once more."""
        await every(interval, stop, self.flush, "interaction flush")
