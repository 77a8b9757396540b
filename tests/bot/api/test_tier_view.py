"""The member API's tier view carries what a till applies: the discount as a rate and a label,
and the tier's points multiplier (issue 18)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from models.rules import TierRule
from tests.bot.api.test_api import call, follower, order

MEMBER = "o_api_member01"


async def test_the_tier_view_carries_the_discount_and_the_multiplier(client: TestClient) -> None:
    await follower(client, MEMBER)
    status, body = await call(client, "GET", f"/members/{MEMBER}")
    assert status == 200
    tier = body["tier"]
    assert (tier["code"], tier["discount_rate"], tier["discount_label"]) == ("basic", 1.0, "无")
    assert tier["points_multiplier"] == 1.0
    # ¥2,000 in one order: silver, 9.5折, 1.2 points a yuan.
    status, _ = await call(client, "POST", "/orders", order("T-1", MEMBER, amount_fen=200_000))
    assert status == 201
    status, body = await call(client, "GET", f"/members/{MEMBER}")
    assert {k: body["tier"][k] for k in ("code", "discount_rate", "discount_label")} == {
        "code": "silver",
        "discount_rate": 0.95,
        "discount_label": "9.5折",
    }
    assert body["tier"]["points_multiplier"] == 1.2


async def test_a_configured_rate_is_served_as_a_number(app_factory: Callable[..., Any]) -> None:
    tiers = [
        {"code": "basic", "name": "普通会员", "min_orders": 0, "multiplier": "1"},
        {
            "code": "club",
            "name": "俱乐部会员",
            "min_orders": 1,
            "multiplier": "1.5",
            "discount": "会员价",
            "discount_rate": "0.88",
        },
    ]
    client = await app_factory(programme={"tiers": tiers})
    await follower(client, MEMBER)
    status, _ = await call(client, "POST", "/orders", order("T-1", MEMBER))
    assert status == 201
    _, body = await call(client, "GET", f"/members/{MEMBER}")
    assert body["tier"] | {"since": None} == {
        "code": "club",
        "name": "俱乐部会员",
        "since": None,
        "next_tier": None,
        "orders_needed": None,
        "spend_needed_fen": None,
        "discount_rate": 0.88,
        "discount_label": "会员价",
        "points_multiplier": 1.5,
    }


@pytest.mark.parametrize(
    ("label", "rate", "error"),
    [
        ("9.5折", None, None),
        ("95折", "0.95", None),
        ("无", None, None),
        ("会员价", None, "set discount_rate"),
        ("9折", "0.95", "contradicts"),
    ],
)
def test_the_rate_follows_the_label_or_is_set(
    label: str, rate: str | None, error: str | None
) -> None:
    fields: dict[str, Any] = {"code": "t", "name": "t", "min_orders": 0, "multiplier": "1"}
    fields |= {"discount": label} | ({"discount_rate": rate} if rate else {})
    if error:
        with pytest.raises(ValueError, match=error):
            TierRule(**fields)
    else:
        assert TierRule(**fields).rate in (Decimal("0.95"), Decimal(1))


async def test_the_openapi_document_types_them_as_numbers(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    tier = doc["components"]["schemas"]["TierOut"]["properties"]
    assert tier["discount_rate"]["type"] == tier["points_multiplier"]["type"] == "number"
    assert tier["discount_label"]["type"] == "string"
