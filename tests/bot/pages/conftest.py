"""The member centre's app for the page tests (``centre``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.bot.pages.centre_helpers import Centre, start_centre
from tests.wechat_standin import WeChatStandIn


@pytest.fixture
async def centre(
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,
    standin: WeChatStandIn,
) -> Centre:
    """The real app on a free port, signing members in through the stand-in."""
    return await start_centre(aiohttp_server, aiohttp_client, db_url, redis_url, standin)
