"""The API sub-application: bearer-token check, JSON errors, the OpenAPI document."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.api import (
    campaign_routes,  # noqa: F401 - its endpoints register on import
    hook_routes,  # noqa: F401 - its endpoints register on import
    schemas,
)
from bot.api.routes import ApiError, api

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
PUBLIC = frozenset({"/openapi.json"})


def create_api_app(token: str) -> web.Application:
    """The /api/v1 sub-app; ``token`` is the bearer token shop systems present."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix(PREFIX)
        if path not in PUBLIC:
            given = request.headers.get("Authorization", "").encode()
            # Constant-time comparison: the time taken says nothing about the token.
            if not hmac.compare_digest(given, expected):
                raise _with_challenge(ApiError(401, "unauthorized", "missing or wrong token"))
        try:
            return await handler(request)
        except web.HTTPNotFound:
            raise ApiError(404, "not_found", "no such endpoint") from None
        except web.HTTPMethodNotAllowed:
            raise ApiError(405, "method_not_allowed", "method not allowed here") from None
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "too_large", "request body too large") from None
        except web.HTTPException:
            raise
        except Exception:
            log.exception("api request failed", extra={"path": path})
            raise ApiError(500, "internal", "internal error; nothing was changed") from None

    document = api.openapi(schemas.ErrorOut, PREFIX)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application(middlewares=[guard])
    app.add_routes([web.get("/openapi.json", openapi), *api.routes()])
    return app


def _with_challenge(error: ApiError) -> ApiError:
    error.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return error
