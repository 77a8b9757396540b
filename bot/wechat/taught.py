"""Phrasings staff taught on the console's misses page, in every process within seconds.

Teaching bumps a version number in Redis (``announce``); each webhook process checks it every
``[chat] taught_refresh_seconds`` and, when it moved, reloads the taught phrasings from the
database into its understanding step: no restart, no message to every process. The same loop
deletes members' words kept longer than ``[chat] miss_retention_days`` (about hourly; the
DELETE is idempotent, so several processes doing it is harmless).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.tasks import every
from handlers.understanding.pipeline import Understander
from models.base import utcnow
from models.misses import forget_old_texts, taught_phrasings

VERSION_KEY = "understanding:taught:version"
FORGET_EVERY_SECONDS = 3600


async def announce(redis: Redis) -> None:
    """Tell every process the taught phrasings changed."""
    await redis.incr(VERSION_KEY)


class TaughtPhrasings:
    """Keeps one process's understanding step current with what staff taught."""

    def __init__(
        self,
        redis: Redis,
        reader: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        understander: Understander,
        retention_days: int,
    ) -> None:
        self._redis = redis
        self._reader = reader
        self._sessions = sessions
        self._understander = understander
        self._retention = timedelta(days=retention_days)
        self._seen: bytes | None = None
        # The first tick forgets at once, whatever the machine's uptime (monotonic's origin).
        self._forgotten_at = -math.inf

    async def refresh(self) -> bool:
        """Reload the taught phrasings if they changed since the last look; True if so."""
        version = await self._redis.get(VERSION_KEY) or b"0"
        if version == self._seen:
            return False
        async with self._reader.connect() as connection:
            taught = await taught_phrasings(connection)
        self._understander.teach(taught)
        self._seen = version
        return True

    async def forget_old_texts(self) -> int:
        """Delete members' words older than the retention period."""
        async with self._sessions.begin() as session:
            return await forget_old_texts(session, utcnow() - self._retention)

    async def _tick(self) -> None:
        await self.refresh()
        if time.monotonic() - self._forgotten_at >= FORGET_EVERY_SECONDS:
            self._forgotten_at = time.monotonic()
            await self.forget_old_texts()

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Check every ``interval`` seconds until ``stop`` is set."""
        await every(interval, stop, self._tick, "taught phrasings refresh")
