"""Coupon redemption through the API checks the kind's conditions (issue 18): the order amount
for 满减, the first paid order for 新人首单券, the tier for tier coupons; a refusal is a 409 with
a reason code and changes nothing."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from models.rules import DEFAULT_COUPONS
from tests.bot.api.test_api import call, follower, order

MEMBER = "o_api_member01"


async def issue(client: TestClient, kind: str, key: str) -> str:
    status, coupon = await call(
        client,
        "POST",
        "/coupons",
        {"openid": MEMBER, "kind": kind, "reason": "测试", "idempotency_key": f"rules-{key}"},
    )
    assert status == 201
    return str(coupon["code"])


async def redeem(client: TestClient, code: str, **body: Any) -> tuple[int, Any]:
    return await call(client, "POST", f"/coupons/{code}/redeem", {"openid": MEMBER, **body})


async def coupon_status(client: TestClient, code: str) -> str:
    # A redemption for a fresh order with a large amount: only a refusal for the status itself.
    status, body = await redeem(client, code, order_id="PROBE", order_amount_fen=10**9)
    return "redeemed" if status == 200 else str(body["error"]["code"])


async def test_a_threshold_coupon_needs_the_amount_and_its_threshold(
    client: TestClient,
) -> None:
    await follower(client, MEMBER)
    code = await issue(client, "full_300_50", "full")
    status, body = await redeem(client, code, order_id="ORD-1")
    assert (status, body["error"]["field"]) == (422, "order_amount_fen")
    status, body = await redeem(client, code, order_id="ORD-1", order_amount_fen=29_999)
    assert status == 409
    assert body["error"] == {
        "code": "coupon_below_threshold",
        "message": "the order must come to at least 30000 fen for this coupon",
        "field": "order_amount_fen",
        "threshold_fen": 30_000,
    }
    for bad in (0, -1, "30000", 1.5):
        status, body = await redeem(client, code, order_id="ORD-1", order_amount_fen=bad)
        assert (status, body["error"]["field"]) == (422, "order_amount_fen")
    status, body = await redeem(client, code, order_id="ORD-1", order_amount_fen=30_000)
    assert (status, body["status"], body["order_id"]) == (200, "redeemed", "ORD-1")


async def test_a_welcome_coupon_is_refused_after_the_first_order(client: TestClient) -> None:
    await follower(client, MEMBER)
    code = await issue(client, "welcome_first_order", "welcome")
    status, _ = await call(client, "POST", "/orders", order("ORD-FIRST"))
    assert status == 201
    status, body = await redeem(client, code, order_id="ORD-SECOND")
    assert (status, body["error"]["code"]) == (409, "coupon_not_first_order")
    # The refusal changed nothing: the first order itself may still use it.
    status, body = await redeem(client, code, order_id="ORD-FIRST")
    assert (status, body["status"]) == (200, "redeemed")


async def test_a_tier_coupon_is_refused_to_other_tiers(app_factory: Any) -> None:
    client = await app_factory(
        programme={
            "coupons": [
                *(kind.model_dump() for kind in DEFAULT_COUPONS),
                {
                    "code": "gold_gift",
                    "name": "金卡专享券",
                    "type": "cash",
                    "discount_fen": 1000,
                    "tiers": ["gold", "diamond"],
                },
            ],
        }
    )
    await follower(client, MEMBER)
    code = await issue(client, "gold_gift", "gold")
    status, body = await redeem(client, code, order_id="ORD-1")
    assert (status, body["error"]["code"], body["error"]["threshold_fen"]) == (
        409,
        "coupon_tier_not_eligible",
        None,
    )
    assert await coupon_status(client, code) == "coupon_tier_not_eligible"


async def test_the_openapi_document_describes_the_conditions(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    operation = doc["paths"]["/api/v1/coupons/{code}/redeem"]["post"]
    assert set(operation["responses"]) >= {"200", "404", "409", "422"}
    refusal = operation["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert refusal.endswith("/CouponRefusalOut")
    schemas = doc["components"]["schemas"]
    assert "threshold_fen" in schemas["CouponRefusalDetail"]["properties"]
    amount = schemas["CouponRedeemIn"]["properties"]["order_amount_fen"]
    assert "threshold" in str(amount)
