"""The JSON API as a shop system uses it: every answer, and every bad payload refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import API_TOKEN
from tests.helpers import PLAIN, push

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NOW = datetime.now(UTC)


async def call(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    response = await client.request(
        method, f"/api/v1{path}", json=body, headers=AUTH if headers is None else headers
    )
    return response.status, await response.json()


async def follower(client: TestClient, openid: str) -> None:
    await push(client, PLAIN, PLAIN.event(openid, "subscribe"))


def order(
    order_id: str, openid: str = "o_api_member01", amount_fen: int = 10_000, **extra: Any
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "openid": openid,
        "amount_fen": amount_fen,
        "paid_at": (NOW - timedelta(hours=1)).isoformat(),
        "channel": "pos",
        **extra,
    }


async def test_token_is_required(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
        status, body = await call(client, "GET", "/members/o_x", headers=headers)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"


async def test_openapi_document_lists_every_route(client: TestClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    doc = await response.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/api/v1/orders",
        "/api/v1/orders/{order_id}/refund",
        "/api/v1/members/{openid}",
        "/api/v1/members/{openid}/ledger",
        "/api/v1/members/{openid}/points",
        "/api/v1/members/binding-codes",
    }
    order_schema = doc["components"]["schemas"]["OrderIn"]
    assert "amount_fen" in order_schema["required"]


async def test_profile_then_member_view(client: TestClient) -> None:
    status, body = await call(
        client,
        "PUT",
        "/members/o_api_member01",
        {"name": "王小明", "phone": "13812345678", "birthday": "1990-05-01", "tags": ["vip"]},
    )
    assert status == 201
    assert body["tier"]["code"] == "basic"
    assert body["tier"]["next_tier"] == "silver"
    assert body["tier"]["orders_needed"] == 4
    status, body = await call(client, "PUT", "/members/o_api_member01", {"name": "王明"})
    assert status == 200
    assert (body["name"], body["phone"], body["tags"]) == ("王明", "13812345678", ["vip"])


async def test_order_credits_points_once_and_conflicts_on_other_contents(
    client: TestClient,
) -> None:
    await follower(client, "o_api_member01")
    status, body = await call(client, "POST", "/orders", order("A-1", amount_fen=12_345))
    assert (status, body["points_earned"], body["balance"]) == (201, 123, 123)
    status, again = await call(client, "POST", "/orders", order("A-1", amount_fen=12_345))
    assert status == 200
    assert again["points_earned"] == 123
    _, member = await call(client, "GET", "/members/o_api_member01")
    assert member["balance"] == 123
    status, body = await call(client, "POST", "/orders", order("A-1", amount_fen=99_999))
    assert status == 409
    assert body["error"]["field"] == "order_id"


async def test_fourth_order_upgrades_to_silver_and_multiplier_applies_after(
    client: TestClient,
) -> None:
    await follower(client, "o_api_member01")
    for n in range(3):
        _, body = await call(client, "POST", "/orders", order(f"U-{n}"))
        assert body["upgrade"] is None
    _, body = await call(client, "POST", "/orders", order("U-3"))
    assert body["upgrade"] == {"from_tier": "basic", "to_tier": "silver"}
    assert body["tier"] == "silver"
    _status, body = await call(client, "POST", "/orders", order("U-4"))
    assert body["points_earned"] == 120  # ¥100 × 1.2


async def test_an_order_stamped_ahead_counts_for_its_own_upgrade(client: TestClient) -> None:
    # A till's clock four minutes fast: accepted (up to five), and it is the fourth order.
    await follower(client, "o_api_member01")
    for n in range(3):
        assert (await call(client, "POST", "/orders", order(f"F-{n}")))[0] == 201
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    status, body = await call(client, "POST", "/orders", order("F-3", paid_at=ahead))
    assert status == 201
    assert body["upgrade"] == {"from_tier": "basic", "to_tier": "silver"}
    _, member = await call(client, "GET", "/members/o_api_member01")
    assert (member["tier"]["code"], member["tier"]["orders_needed"]) == ("silver", 3)


async def test_birthday_month_doubles_points(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    month = (NOW - timedelta(hours=1)).astimezone(UTC).month
    await call(client, "PUT", "/members/o_api_member01", {"birthday": f"1990-{month:02d}-15"})
    _, body = await call(client, "POST", "/orders", order("B-1"))
    assert body["points_earned"] == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            {
                "openid": "o_api_member01",
                "amount_fen": 100,
                "paid_at": NOW.isoformat(),
                "channel": "pos",
            },
            "order_id",
        ),
        (order("X-1", extra_field=1), "extra_field"),
        (order("X-1", amount_fen="100"), "amount_fen"),
        (order("X-1", amount_fen=-5), "amount_fen"),
        (order("X-1", amount_fen=0), "amount_fen"),
        (order("X-1", amount_fen=10**12), "amount_fen"),
        (order("X-1", paid_at="yesterday"), "paid_at"),
        (order("X-1", paid_at="2026-11-22T10:00:00"), "paid_at"),
        (order("X-1", paid_at=(NOW + timedelta(days=2)).isoformat()), "paid_at"),
        (order("X-1", openid="o_nobody_here"), "openid"),
        (order("X-1", customer_ref="c1"), None),
        (order(""), "order_id"),
        (order("a" * 65), "order_id"),
    ],
)
async def test_bad_order_payloads_name_the_field_and_write_nothing(
    client: TestClient,
    payload: dict[str, Any],
    field: str | None,
) -> None:
    await follower(client, "o_api_member01")
    status, body = await call(client, "POST", "/orders", payload)
    assert 400 <= status < 500
    assert body["error"]["field"] == field
    _, member = await call(client, "GET", "/members/o_api_member01")
    assert member["balance"] == 0


async def test_not_json_is_refused(client: TestClient) -> None:
    response = await client.post("/api/v1/orders", data=b"{not json", headers=AUTH)
    assert response.status == 422


async def test_partial_and_full_refund_take_back_points(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await call(client, "POST", "/orders", order("R-1", amount_fen=20_000))  # 200 points
    status, body = await call(
        client, "POST", "/orders/R-1/refund", {"refund_id": "RF-1", "amount_fen": 5_000}
    )
    assert (status, body["points_reversed"], body["balance"]) == (200, 50, 150)
    status, again = await call(
        client, "POST", "/orders/R-1/refund", {"refund_id": "RF-1", "amount_fen": 5_000}
    )
    assert (status, again["balance"]) == (200, 150)
    status, body = await call(client, "POST", "/orders/R-1/refund", {"refund_id": "RF-2"})
    assert (body["amount_fen"], body["points_reversed"], body["balance"]) == (15_000, 150, 0)
    status, body = await call(client, "POST", "/orders/R-1/refund", {"refund_id": "RF-3"})
    assert status == 409


async def test_a_retried_full_refund_replays_the_first_result(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await call(client, "POST", "/orders", order("RT-1", amount_fen=20_000))  # 200 points
    status, first = await call(client, "POST", "/orders/RT-1/refund", {"refund_id": "RF-T1"})
    assert (status, first["amount_fen"], first["points_reversed"], first["balance"]) == (
        200,
        20_000,
        200,
        0,
    )
    status, again = await call(client, "POST", "/orders/RT-1/refund", {"refund_id": "RF-T1"})
    assert (status, again) == (200, first)
    status, again = await call(
        client, "POST", "/orders/RT-1/refund", {"refund_id": "RF-T1", "amount_fen": 20_000}
    )
    assert (status, again) == (200, first)
    status, body = await call(client, "POST", "/orders/RT-1/refund", {"refund_id": "RF-T2"})
    assert (status, body["error"]["code"]) == (409, "fully_refunded")
    status, body = await call(
        client, "POST", "/orders/RT-1/refund", {"refund_id": "RF-T1", "amount_fen": 5_000}
    )
    assert (status, body["error"]["code"]) == (409, "refund_conflict")


async def test_the_same_order_with_its_time_in_another_offset_is_a_replay(
    client: TestClient,
) -> None:
    await follower(client, "o_api_member01")
    paid = (NOW - timedelta(hours=1)).replace(microsecond=0)
    beijing = order("TZ-1", paid_at=paid.astimezone(timezone(timedelta(hours=8))).isoformat())
    status, first = await call(client, "POST", "/orders", beijing)
    assert (status, first["points_earned"]) == (201, 100)
    utc = beijing | {"paid_at": paid.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    status, again = await call(client, "POST", "/orders", utc)
    assert (status, again["points_earned"], again["balance"]) == (200, 100, 100)
    later = beijing | {"paid_at": (paid + timedelta(seconds=1)).isoformat()}
    status, body = await call(client, "POST", "/orders", later)
    assert (status, body["error"]["code"]) == (409, "order_conflict")


async def test_refund_after_points_were_spent_never_goes_negative(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await call(client, "POST", "/orders", order("S-1", amount_fen=10_000))  # 100 points
    status, _ = await call(
        client,
        "POST",
        "/members/o_api_member01/points",
        {"kind": "redeem", "points": -80, "reason": "兑换礼品", "idempotency_key": "redeem-0001"},
    )
    assert status == 200
    status, body = await call(client, "POST", "/orders/S-1/refund", {"refund_id": "RF-S1"})
    assert (body["points_reversed"], body["points_unrecovered"], body["balance"]) == (20, 80, 0)


async def test_redemption_needs_enough_points_and_is_idempotent(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await call(client, "POST", "/orders", order("P-1", amount_fen=5_000))  # 50 points
    redeem = {"kind": "redeem", "points": -60, "reason": "兑换", "idempotency_key": "k-000001"}
    status, body = await call(client, "POST", "/members/o_api_member01/points", redeem)
    assert status == 409
    assert body["error"]["code"] == "insufficient_points"
    redeem["points"] = -30
    status, body = await call(client, "POST", "/members/o_api_member01/points", redeem)
    assert (status, body["balance"]) == (200, 20)
    status, body = await call(client, "POST", "/members/o_api_member01/points", redeem)
    assert (status, body["balance"]) == (200, 20)
    redeem["points"] = -10
    status, body = await call(client, "POST", "/members/o_api_member01/points", redeem)
    assert (status, body["error"]["field"]) == (409, "idempotency_key")


async def test_ledger_pages_newest_first(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    for n in range(5):
        await call(client, "POST", "/orders", order(f"L-{n}", amount_fen=100 * (n + 1)))
    status, page = await call(client, "GET", "/members/o_api_member01/ledger?limit=2")
    assert status == 200, page
    # The fourth order made the member silver: the fifth earns ¥5 × 1.2 = 6.
    assert [e["points"] for e in page["entries"]] == [6, 4]
    _, page2 = await call(
        client, "GET", f"/members/o_api_member01/ledger?limit=2&cursor={page['next_cursor']}"
    )
    _, page3 = await call(
        client, "GET", f"/members/o_api_member01/ledger?limit=2&cursor={page2['next_cursor']}"
    )
    assert [e["points"] for e in page2["entries"] + page3["entries"]] == [3, 2, 1]
    assert page3["next_cursor"] is None
    status, body = await call(client, "GET", "/members/o_api_member01/ledger?limit=0")
    assert (status, body["error"]["field"]) == (422, "limit")


async def test_binding_code_for_a_customer(client: TestClient) -> None:
    status, body = await call(
        client, "POST", "/members/binding-codes", {"customer_ref": "CRM-1001", "name": "李四"}
    )
    assert status == 201
    assert len(body["code"]) == 8
    by_ref = order("C-1", customer_ref="CRM-1001")
    del by_ref["openid"]
    status, body = await call(client, "POST", "/orders", by_ref)
    assert (status, body["points_earned"]) == (201, 100)


async def test_coupon_issue_and_redeem_once(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    issue = {
        "openid": "o_api_member01",
        "kind": "full_300_50",
        "reason": "回归专属券",
        "idempotency_key": "winback-0001",
    }
    status, coupon = await call(client, "POST", "/coupons", issue)
    assert (status, coupon["status"], coupon["kind"]) == (201, "issued", "full_300_50")
    status, again = await call(client, "POST", "/coupons", issue)
    assert (status, again["code"]) == (200, coupon["code"])
    redeem = {"order_id": "ORD-9", "openid": "o_api_member01", "order_amount_fen": 30_000}
    status, used = await call(client, "POST", f"/coupons/{coupon['code']}/redeem", redeem)
    assert (status, used["status"], used["order_id"]) == (200, "redeemed", "ORD-9")
    status, _ = await call(client, "POST", f"/coupons/{coupon['code']}/redeem", redeem)
    assert status == 200  # the shop's retry
    status, body = await call(
        client, "POST", f"/coupons/{coupon['code']}/redeem", {"order_id": "ORD-10"}
    )
    assert (status, body["error"]["code"]) == (409, "coupon_used")
    status, body = await call(client, "POST", "/coupons/NOSUCHCODE22/redeem", redeem)
    assert status == 404
    status, body = await call(
        client, "POST", "/coupons", issue | {"kind": "no_such_kind", "idempotency_key": "x-000001"}
    )
    assert (status, body["error"]["field"]) == (422, "kind")


async def test_someone_elses_coupon_is_refused(client: TestClient) -> None:
    await follower(client, "o_api_member01")
    await follower(client, "o_api_member02")
    _, coupon = await call(
        client,
        "POST",
        "/coupons",
        {
            "openid": "o_api_member01",
            "kind": "cash_10",
            "reason": "t",
            "idempotency_key": "gift-00001",
        },
    )
    status, body = await call(
        client,
        "POST",
        f"/coupons/{coupon['code']}/redeem",
        {"order_id": "ORD-1", "openid": "o_api_member02"},
    )
    assert (status, body["error"]["code"]) == (409, "coupon_not_yours")
