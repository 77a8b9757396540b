"""Audiences by what members buy, through the console's live count and the JSON API (whose
OpenAPI document describes the new conditions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import add_staff, csrf_of, login

MAKEUP = {
    "root": {"all": [{"field": "bought_category", "op": "in", "value": ["彩妆"], "months": 6}]}
}


async def shoppers(client: TestClient) -> None:
    """Three followers: two bought 彩妆 lately (one of them twice, in the mall), one 护肤."""
    recent = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    for n, openid in enumerate(("o_shop_000001", "o_shop_000002", "o_shop_000003")):
        await follower(client, openid)
        category = "护肤" if n == 2 else "彩妆"
        await call(
            client,
            "POST",
            "/orders",
            order(f"SHOP-{n}", openid, 30_000, paid_at=recent, category=category),
        )
    await call(
        client,
        "POST",
        "/orders",
        order("SHOP-X", "o_shop_000001", 50_000, paid_at=recent, category="彩妆", channel="mall"),
    )


async def test_the_console_counts_a_purchase_audience_before_sending(client: TestClient) -> None:
    await shoppers(client)
    await add_staff(client, "mia", "marketer")
    await login(client, "mia")
    token = await csrf_of(client, "/console/campaigns/new")

    async def count(**fields: str) -> tuple[int, Any]:
        response = await client.post(
            "/console/api/audience-preview",
            data={"csrf": token, **fields},
            headers={"X-CSRF-Token": token},
        )
        return response.status, await response.json()

    assert (await count())[1]["count"] == 3
    assert (await count(bought_category="彩妆", bought_months="6"))[1]["count"] == 2
    assert (await count(bought_category="彩妆，护肤"))[1]["count"] == 3
    assert (await count(bought_channel="mall"))[1]["count"] == 1
    assert (await count(orders_min="2"))[1]["count"] == 1
    assert (await count(spend_min="400", bought_category="彩妆"))[1]["count"] == 1  # ¥800
    assert (await count(spend_max="300"))[1]["count"] == 2
    # Combined with the member filters: nobody here is gold.
    assert (await count(bought_category="彩妆", tier="gold"))[1]["count"] == 0
    status, body = await count(orders_min="两单")
    assert (status, body["error"]) == (422, "订单数需为不小于0的整数。")
    status, body = await count(bought_category="彩妆", bought_months="48")
    assert (status, body["error"]) == (422, "消费时间范围需为1到36个月。")


async def test_the_api_takes_the_same_filters(client: TestClient) -> None:
    await shoppers(client)
    status, shown = await call(client, "POST", "/audiences/preview", {"audience": MAKEUP})
    assert (status, shown["count"]) == (200, 2)
    spend = {
        "root": {
            "all": [
                {"field": "spend", "op": "gte", "value": 40_000, "months": 12},
                {"field": "bought_channel", "op": "in", "value": ["pos"], "months": 12},
            ]
        }
    }
    status, shown = await call(client, "POST", "/audiences/preview", {"audience": spend})
    assert (status, shown["count"]) == (200, 1)
    document = await (await client.get("/api/v1/openapi.json")).json()
    condition = document["components"]["schemas"]["Condition"]["properties"]
    assert "bought_category" in condition["field"]["enum"]
    assert "months" in condition


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "bought_category", "op": "in", "value": ["彩妆"]},
        {"field": "order_count", "op": "gte", "value": 2, "months": 0},
        {"field": "spend", "op": "in", "value": [1], "months": 6},
    ],
)
async def test_the_api_refuses_a_bad_purchase_condition(
    client: TestClient, condition: dict[str, Any]
) -> None:
    audience = {"root": {"all": [condition]}}
    status, body = await call(client, "POST", "/audiences/preview", {"audience": audience})
    assert status == 422
    assert body["error"]["field"].startswith("audience")
