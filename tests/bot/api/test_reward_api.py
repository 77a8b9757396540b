"""The points catalogue through the API: items' CRUD with errors that name the field and write
nothing, and the shop closing fulfilment records (retries answered, points returned)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from models.base import utcnow
from models.members import Member
from models.redemption import redeem
from models.rewards import Redeemed, RewardItem
from tests.bot.api.test_api import AUTH, call, follower, order

OPENID = "o_api_member01"
BAG = {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100, "stock": 5}


async def test_the_spec_lists_the_catalogue_paths(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert set(doc["paths"]) >= {
        "/api/v1/rewards",
        "/api/v1/rewards/{reward_id}",
        "/api/v1/rewards/{reward_id}/retire",
        "/api/v1/fulfilments",
        "/api/v1/fulfilments/{redemption_id}",
    }
    assert set(doc["paths"]["/api/v1/rewards/{reward_id}"]) == {"get", "patch"}
    assert "points_price" in doc["components"]["schemas"]["RewardSpec"]["required"]


async def test_create_list_get_change_retire(client: TestClient) -> None:
    status, made = await call(client, "POST", "/rewards", BAG | {"tiers": ["gold"]})
    assert status == 201
    assert (made["status"], made["redeemed"], made["tiers"]) == ("active", 0, ["gold"])
    path = f"/rewards/{made['id']}"
    status, changed = await call(client, "PATCH", path, {"points_price": 150, "stock": None})
    assert status == 200
    assert (changed["points_price"], changed["stock"], changed["name"]) == (150, None, "帆布袋")
    assert (await call(client, "GET", path))[1] == changed
    status, retired = await call(client, "POST", f"{path}/retire")
    assert (status, retired["status"]) == (200, "retired")
    assert (await call(client, "POST", f"{path}/retire"))[0] == 200
    assert (await call(client, "GET", "/rewards"))[1]["rewards"] == []
    assert [r["id"] for r in (await call(client, "GET", "/rewards?status=all"))[1]["rewards"]] == [
        made["id"]
    ]
    assert (await call(client, "GET", "/rewards/999"))[0] == 404


async def test_a_retried_post_with_its_idempotency_key_gets_the_same_item(
    client: TestClient,
) -> None:
    """A shop system that lost the answer sends the POST again with the same Idempotency-Key:
    the item it made (as it is now, 200), not a second one; the key with another item is a
    409 naming the header; a malformed key is a 422; without a key every POST adds one."""
    keyed = AUTH | {"Idempotency-Key": "pim-import-0001"}
    status, made = await call(client, "POST", "/rewards", BAG, keyed)
    assert status == 201
    await call(client, "PATCH", f"/rewards/{made['id']}", {"stock": 3})
    status, again = await call(client, "POST", "/rewards", BAG, keyed)
    assert status == 200
    assert (again["id"], again["stock"]) == (made["id"], 3)
    status, error = await call(client, "POST", "/rewards", BAG | {"points_price": 90}, keyed)
    assert (status, error["error"]["code"]) == (409, "key_conflict")
    assert error["error"]["field"] == "Idempotency-Key"
    for bad in ("short", "has a space in it", "x" * 101):
        status, error = await call(client, "POST", "/rewards", BAG, AUTH | {"Idempotency-Key": bad})
        assert (status, error["error"]["field"]) == (422, "Idempotency-Key")
    assert (await call(client, "POST", "/rewards", BAG))[0] == 201
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(RewardItem)) == 2
    doc = await (await client.get("/api/v1/openapi.json")).json()
    parameters = doc["paths"]["/api/v1/rewards"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in parameters] == [
        ("Idempotency-Key", "header", False)
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (BAG | {"points_price": 0}, "points_price"),
        (BAG | {"kind": "coupon", "delivery": None}, "coupon_kind"),
        (BAG | {"kind": "coupon", "coupon_kind": "nope", "delivery": None}, "coupon_kind"),
        (BAG | {"tiers": ["platinum"]}, "tiers"),
        (BAG | {"delivery": None}, "delivery"),
        (BAG | {"stock": "5"}, "stock"),
        (BAG | {"colour": "red"}, "colour"),
        (
            BAG | {"valid_from": "2026-12-01T00:00:00", "valid_until": "2026-12-31T00:00:00+08:00"},
            "valid_from",
        ),
    ],
)
async def test_a_bad_item_is_refused_naming_the_field_and_nothing_is_written(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    status, error = await call(client, "POST", "/rewards", body)
    assert status == 422
    assert error["error"]["field"] == field
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(RewardItem)) == 0


async def test_a_bad_change_is_refused_and_the_item_stays(client: TestClient) -> None:
    _, made = await call(client, "POST", "/rewards", BAG)
    status, error = await call(client, "PATCH", f"/rewards/{made['id']}", {"kind": "service"})
    assert (status, error["error"]["field"]) == (422, "delivery")
    assert (await call(client, "GET", f"/rewards/{made['id']}"))[1] == made


async def _redeemed(client: TestClient, item_id: int, key: str) -> Redeemed:
    async with client.app[wiring.SESSIONS].begin() as session:
        member_id = await session.scalar(select(Member.id).where(Member.openid == OPENID))
        rules = client.app[wiring.CONFIG].programme
        done = await redeem(session, rules, member_id, item_id, key=key, now=utcnow())
    assert isinstance(done, Redeemed)
    return done


async def test_the_shop_reads_pending_records_and_closes_them(client: TestClient) -> None:
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("F-1", amount_fen=100_000))
    _, bag = await call(client, "POST", "/rewards", BAG)
    _, mug = await call(client, "POST", "/rewards", BAG | {"name": "杯子", "delivery": "ship"})
    first = await _redeemed(client, bag["id"], "a")
    second = await _redeemed(client, mug["id"], "b")
    third = await _redeemed(client, bag["id"], "c")
    status, page = await call(client, "GET", "/fulfilments")
    assert status == 200
    pending = page["fulfilments"]
    assert [f["id"] for f in pending] == [
        first.redemption_id,
        second.redemption_id,
        third.redemption_id,
    ]
    assert pending[0]["pickup_code"] == first.pickup_code
    found = (await call(client, "GET", f"/fulfilments?pickup_code={first.pickup_code}"))[1]
    assert [f["id"] for f in found["fulfilments"]] == [first.redemption_id]

    picked = {"status": "picked_up"}
    status, closed = await call(client, "POST", f"/fulfilments/{first.redemption_id}", picked)
    assert (status, closed["status"], closed["replayed"]) == (200, "picked_up", False)
    status, again = await call(client, "POST", f"/fulfilments/{first.redemption_id}", picked)
    assert (status, again["replayed"]) == (200, True)
    cancel = {"status": "cancelled"}
    status, error = await call(client, "POST", f"/fulfilments/{first.redemption_id}", cancel)
    assert (status, error["error"]["code"]) == (409, "not_pending")

    ship = f"/fulfilments/{second.redemption_id}"
    status, error = await call(client, "POST", ship, {"status": "shipped"})
    assert (status, error["error"]["field"]) == (422, "tracking_number")
    status, shipped = await call(
        client, "POST", ship, {"status": "shipped", "tracking_number": "SF9"}
    )
    assert (status, shipped["tracking_number"]) == (200, "SF9")

    balance = (await call(client, "GET", f"/members/{OPENID}"))[1]["balance"]
    status, cancelled = await call(client, "POST", f"/fulfilments/{third.redemption_id}", cancel)
    assert (status, cancelled["status"]) == (200, "cancelled")
    assert (await call(client, "GET", f"/members/{OPENID}"))[1]["balance"] == balance + 100
    assert (await call(client, "POST", f"/fulfilments/{third.redemption_id}", cancel))[0] == 200
    assert (await call(client, "GET", f"/members/{OPENID}"))[1]["balance"] == balance + 100
    assert (await call(client, "GET", "/fulfilments"))[1]["fulfilments"] == []
    assert (await call(client, "GET", f"/rewards/{bag['id']}"))[1]["stock"] == 4
    assert (await call(client, "POST", "/fulfilments/999", picked))[0] == 404
