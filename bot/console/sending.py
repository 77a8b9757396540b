"""How an agent's words reach a member, shared by the conversation page and cases: inside the
48-hour window as a customer-service message (a window slot taken first, the API's shared rate
respected), outside it as the ``service_reply`` template message through the outbox."""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.wechat.client import WeChatAPIError
from bot.wechat.cs_window import WINDOW_ERRORS, CustomerServiceWindows
from bot.wechat.rate_limit import RateLimiter
from messages import console_copy
from messages.outbound import text_message
from models.deliveries import SERVICE, PlannedPush, plan

log = logging.getLogger(__name__)
SERVICE_REPLY = "service_reply"


async def send_in_window(request: web.Request, openid: str, text: str) -> bool:
    """Send ``text`` as a customer-service message; False when the member's window is closed
    or spent (nothing sent). Another failure of WeChat's is a 502 with a clear message."""
    windows = CustomerServiceWindows(request.config_dict[wiring.REDIS])
    if not await windows.take_slot(openid):
        return False
    config = request.config_dict[wiring.CONFIG]
    # The customer-service API's budget is shared with the push workers.
    await RateLimiter(request.config_dict[wiring.REDIS], config.delivery.rate_per_second).take(
        "custom"
    )
    try:
        await request.config_dict[wiring.WECHAT].send_custom_message(text_message(openid, text))
    except WeChatAPIError as exc:
        if exc.errcode in WINDOW_ERRORS:
            await windows.close(openid)
            return False
        log.warning("console reply not sent", extra={"errcode": exc.errcode})
        raise web.HTTPBadGateway(text=console_copy.SEND_FAILED) from None
    return True


def template_ready(request: web.Request) -> bool:
    """Whether a ``service_reply`` template is configured."""
    return SERVICE_REPLY in request.config_dict[wiring.CONFIG].delivery.templates


async def plan_template(
    db: AsyncSession, member_id: int, key: str, text: str, now: datetime
) -> list[int]:
    """Plan ``text`` as the member's ``service_reply`` template message (``key``: unique per
    message); the delivery ids for the outbox, to enqueue once the transaction commits."""
    push = PlannedPush(
        member_id,
        f"{SERVICE_REPLY}:{key}",
        {"text": text, "fields": console_copy.template_fields(text)},
    )
    return await plan(db, SERVICE_REPLY, SERVICE, [push], now)
