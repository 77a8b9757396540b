"""``GET /healthz`` (the database, Redis through redis-py, and Redis through the webhook's
pipe, each named when down) and ``GET /metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import ResponseError
from sqlalchemy import text

from bot import wiring

CHECK_TIMEOUT = 2.0


async def _check_database(app: web.Application) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with app[wiring.ENGINE].connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "down", and says which
        return f"down: {type(exc).__name__}"
    return "ok"


async def _check_redis(ping: Callable[[], Awaitable[object]]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await ping()
    except ResponseError as exc:
        # Redis answers but refuses: its error's first word says why (MISCONF: it cannot
        # write its data files, e.g. a full disk).
        return f"down: {str(exc).split(' ', 1)[0][:16] or type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - any failure means "down", and says which
        return f"down: {type(exc).__name__}"
    return "ok"


async def healthz(request: web.Request) -> web.Response:
    """200 when the database and Redis answer, Redis both to redis-py and to the webhook's
    pipe (which connects on its own, and could fail alone); 503 naming what is down."""
    app = request.app
    pipe = app[wiring.PIPE]
    checks = {
        "database": _check_database(app),
        "redis": _check_redis(app[wiring.REDIS].ping),
        "redis_pipe": _check_redis(lambda: pipe.execute("PING")),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    healthy = all(result == "ok" for result in results.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", **results},
        status=200 if healthy else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body, content_type = request.app[wiring.METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


routes = [web.get("/healthz", healthz), web.get("/metrics", metrics)]
