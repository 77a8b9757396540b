"""WeChat's TEMPLATESENDJOBFINISH callbacks, recorded in batches.

A push to 30,000 members brings back thousands of these a second. The webhook only appends
``msgid:status`` to a Redis list (one command on the pipelined connection); a flusher moves
them to the database a thousand per transaction (models/deliveries.py ``record_receipts``:
two statements a batch). Entries are removed from the list only after their batch commits, so
a crash re-applies a batch, which is harmless. With Redis unavailable a receipt is written to
the database at once instead: WeChat sends it once and does not retry a "success".
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tasks import every
from bot.wechat.redis_pipe import RedisPipe
from models.base import utcnow
from models.deliveries import record_receipts

log = logging.getLogger(__name__)

PENDING_RECEIPTS = "receipts:pending"
# The part of WeChat's status kept ("success", "failed:user block", "failed:system failed").
STATUS_CHARS = 32


class ReceiptQueue:
    """Where the webhook drops template outcomes."""

    def __init__(self, pipe: RedisPipe, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._pipe = pipe
        self._sessions = sessions

    async def note(self, msgid: int, status: str) -> None:
        """Queue WeChat's final status for the template message ``msgid``; with Redis
        unavailable, record it at once (one short transaction) rather than lose it."""
        status = status[:STATUS_CHARS]
        try:
            await self._pipe.execute("RPUSH", PENDING_RECEIPTS, f"{msgid}:{status}")
        except RedisError:
            log.warning("redis unavailable; template receipt recorded directly")
            async with self._sessions.begin() as session:
                await record_receipts(session, [(msgid, status)], utcnow())


class ReceiptFlusher:
    """Applies queued template outcomes to their deliveries, ``batch`` at a time."""

    def __init__(
        self, redis: Redis, sessions: async_sessionmaker[AsyncSession], batch: int = 1000
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._batch = batch

    async def flush(self) -> int:
        """Record everything queued now; how many receipts were read."""
        read = 0
        while True:
            raw = await self._redis.lrange(PENDING_RECEIPTS, 0, self._batch - 1)
            if not raw:
                return read
            receipts = []
            for item in raw:
                msgid, _, status = item.decode().partition(":")
                if msgid.isdigit():
                    receipts.append((int(msgid), status))
            async with self._sessions.begin() as session:
                await record_receipts(session, receipts, utcnow())
            await self._redis.ltrim(PENDING_RECEIPTS, len(raw), -1)
            read += len(raw)
            if len(raw) < self._batch:
                return read

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Flush every ``interval`` seconds until ``stop`` is set, then once more."""
        await every(interval, stop, self.flush, "receipt flush")
