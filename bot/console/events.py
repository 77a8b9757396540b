"""``GET /console/events``: the console's live feed as server-sent events.

Each open console page holds one stream; it relays what bot/wechat/handoff.py publishes on
``console:events`` (a conversation queued, a member's message, an assignment, an end) and a
comment every 15 seconds, so proxies keep the connection and a dead client is noticed. The
browser's EventSource reconnects by itself after a network blip.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from bot import wiring
from bot.console.auth import requires
from bot.wechat.handoff import EVENTS

HEARTBEAT_SECONDS = 15.0


@requires("agent", "admin")
async def events(request: web.Request) -> web.StreamResponse:
    """Relay console events until the client goes away or the server stops."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    pubsub = request.config_dict[wiring.REDIS].pubsub()
    await pubsub.subscribe(EVENTS)
    try:
        await response.write(b": connected\n\n")
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=HEARTBEAT_SECONDS
            )
            if message is None:
                await response.write(b": heartbeat\n\n")
                continue
            data = message["data"]
            text = data.decode() if isinstance(data, bytes) else str(data)
            await response.write(f"data: {text}\n\n".encode())
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe(EVENTS)
            await pubsub.aclose()
    return response
