"""One structured log line and the HTTP metrics for every request."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.metrics import Metrics

log = logging.getLogger("bot.request")

# Fields a handler adds to its request's log line (message type, outcome, …).
LOG_FIELDS = web.RequestKey("log_fields", dict[str, Any])


def request_log_middleware(metrics: Metrics) -> web.middleware:
    """Log method, route, status, latency and the handler's own fields (``LOG_FIELDS``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request[LOG_FIELDS] = fields = {}
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            metrics.http_requests.labels(name, str(status)).inc()
            metrics.http_latency.labels(name).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "route": name,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    **fields,
                },
            )

    return middleware
