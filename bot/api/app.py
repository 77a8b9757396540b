"""The API sub-application: bearer tokens, each caller's rate limit, JSON errors, the OpenAPI
document."""

from __future__ import annotations

import hmac
import logging
import math

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot import wiring
from bot.api import (
    campaign_routes,  # noqa: F401 - its endpoints register on import
    hook_routes,  # noqa: F401 - its endpoints register on import
    member_code_routes,  # noqa: F401 - its endpoints register on import
    reward_routes,  # noqa: F401 - its endpoints register on import
    schemas,
)
from bot.api.routes import CALLER, ApiError, api
from bot.api.settings import ApiConfig
from bot.wechat.rate_limit import RateLimiter

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
PUBLIC = frozenset({"/openapi.json"})


def create_api_app(config: ApiConfig) -> web.Application:
    """The /api/v1 sub-app for ``config``'s callers (their bearer tokens and rate limit)."""
    callers = config.callers()
    limiter: RateLimiter | None = None

    def caller_of(given: bytes) -> str | None:
        found = None
        # Every token is compared, in constant time: the time taken says nothing about a
        # token, nor about which one matched.
        for name, expected in callers.items():
            if hmac.compare_digest(given, expected):
                found = name
        return found

    async def within_limit(request: web.Request, caller: str) -> None:
        nonlocal limiter
        if not config.rate_per_minute:
            return
        if limiter is None:
            limiter = RateLimiter(request.config_dict[wiring.REDIS], {})
        try:
            wait = await limiter.try_take(
                f"api:{caller}", config.rate_per_minute / 60, config.rate_burst
            )
        except RedisError:
            # Redis away: the API keeps serving (the database is the record), unlimited.
            log.warning("api rate limit unavailable", extra={"caller": caller})
            return
        if wait > 0:
            error = ApiError(429, "rate_limited", "too many requests; retry after a pause")
            error.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise error

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(PREFIX)
        if path not in PUBLIC:
            caller = caller_of(request.headers.get("Authorization", "").encode())
            if caller is None:
                raise _with_challenge(ApiError(401, "unauthorized", "missing or wrong token"))
            await within_limit(request, caller)
            request[CALLER] = caller
        try:
            return await handler(request)
        except web.HTTPNotFound:
            raise ApiError(404, "not_found", "no such endpoint") from None
        except web.HTTPMethodNotAllowed as exc:
            error = ApiError(405, "method_not_allowed", "method not allowed here")
            error.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            raise error from None
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "too_large", "request body too large") from None
        except web.HTTPException:
            raise
        except Exception as exc:
            if not _database_away(exc):
                log.exception("api request failed", extra={"path": path})
                raise ApiError(500, "internal", "internal error; nothing was changed") from None
            # Worth retrying, and the transaction never committed.
            log.warning("api database unavailable", extra={"path": path, "error": repr(exc)})
            error = ApiError(503, "unavailable", "database unavailable; nothing was changed")
            error.headers["Retry-After"] = "1"
            raise error from None

    document = api.openapi(schemas.ErrorOut, PREFIX)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application(middlewares=[guard])
    app.add_routes([web.get("/openapi.json", openapi), *api.routes()])
    return app


def _database_away(exc: Exception) -> bool:
    """The database could not be reached, or a connection it dropped was just replaced."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _with_challenge(error: ApiError) -> ApiError:
    error.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return error
