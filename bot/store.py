"""The database for a command-line run, wired as the service wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Config
from bot.database import create_engine, create_sessionmaker
from bot.redis_server import open_redis
from bot.wechat.points_cache import PointsCache
from bot.wechat.redis_pipe import RedisPipe


@asynccontextmanager
async def open_store(config: Config) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the configured database whose points changes reach the service's points
    cache (jobs and imports move points too), closed cleanly on exit."""
    database = config.database
    engine = create_engine(
        database.url, pool_size=database.pool_size, max_overflow=database.max_overflow
    )
    try:
        async with open_redis(config.redis) as redis:
            pipe = RedisPipe.like(redis)
            points = PointsCache(pipe, config.programme.zone)
            try:
                yield create_sessionmaker(engine, points.forget_soon)
            finally:
                await points.drain()
                await pipe.close()
    finally:
        await engine.dispose()
