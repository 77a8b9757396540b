"""Who may call the API: each caller's own token, and each caller's own rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot import wiring
from bot.api.settings import ApiConfig
from bot.app import create_app
from models.orders import Order
from tests.bot.api.test_api import call, follower, order
from tests.conftest import API_TOKEN, make_config

ERP_TOKEN = "erp-token-0123456789abcdef"
OPENID = "o_api_member01"


async def _client(
    aiohttp_client: Callable[..., Any], db_url: str, redis_url: str, **api: Any
) -> TestClient:
    """The app with two callers; the test Redis must be emptied first (the ``redis`` fixture)."""
    config = make_config(db_url, redis_url)
    settings = ApiConfig(token=SecretStr(API_TOKEN), tokens={"erp": SecretStr(ERP_TOKEN)}, **api)
    return await aiohttp_client(create_app(config.model_copy(update={"api": settings})))


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _orders(client: TestClient) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def test_each_caller_has_its_token_and_a_wrong_one_is_refused(
    aiohttp_client: Callable[..., Any], db_url: str, redis_url: str, redis: Redis
) -> None:
    client = await _client(aiohttp_client, db_url, redis_url)
    await follower(client, OPENID)
    for token in (API_TOKEN, ERP_TOKEN):
        status, _ = await call(client, "GET", f"/members/{OPENID}", headers=_as(token))
        assert status == 200
    for headers in ({}, _as(ERP_TOKEN[:-1]), _as(ERP_TOKEN + "x"), {"Authorization": ERP_TOKEN}):
        response = await client.get(f"/api/v1/members/{OPENID}", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert (await response.json())["error"]["code"] == "unauthorized"


async def test_a_caller_over_its_limit_gets_429_and_others_are_not_held_back(
    aiohttp_client: Callable[..., Any], db_url: str, redis_url: str, redis: Redis
) -> None:
    client = await _client(aiohttp_client, db_url, redis_url, rate_per_minute=6, rate_burst=3)
    await follower(client, OPENID)
    for n in range(3):
        status, body = await call(
            client, "POST", "/orders", order(f"L-{n}", OPENID), _as(ERP_TOKEN)
        )
        assert status == 201, body
    response = await client.post(
        "/api/v1/orders", json=order("L-3", OPENID), headers=_as(ERP_TOKEN)
    )
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limited"
    # Six a minute: the next token is ten seconds away.
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert await _orders(client) == 3  # the refused order was not recorded
    status, _ = await call(client, "POST", "/orders", order("L-4", OPENID), _as(API_TOKEN))
    assert status == 201


async def test_a_method_not_allowed_says_which_are(
    aiohttp_client: Callable[..., Any], db_url: str, redis_url: str, redis: Redis
) -> None:
    client = await _client(aiohttp_client, db_url, redis_url)
    response = await client.delete("/api/v1/orders", headers=_as(ERP_TOKEN))
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"
