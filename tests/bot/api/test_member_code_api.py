"""The till and the member code: resolve it to the member, then report the order with it."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from models.ledger import LedgerEntry
from models.member_codes import MemberCodeUse, member_code
from models.members import Member
from models.orders import Order
from tests.bot.api.test_api import call, follower, order


def _key(client: TestClient) -> bytes:
    config = client.app[wiring.CONFIG]
    return config.member_centre.key("member-code", config.wechat.secret)


def _step(client: TestClient, back: int = 0) -> int:
    return int(time.time()) // client.app[wiring.CONFIG].member_centre.code_seconds - back


async def _member_id(client: TestClient, openid: str) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        found = await session.scalar(select(Member.id).where(Member.openid == openid))
    assert found is not None
    return found


async def _written(client: TestClient) -> tuple[int, int, int]:
    async with client.app[wiring.SESSIONS]() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (Order, LedgerEntry, MemberCodeUse)
        ]
    return counts[0] or 0, counts[1] or 0, counts[2] or 0


async def test_resolve_gives_the_member_once(client: TestClient) -> None:
    await follower(client, "o_till_alice01")
    await follower(client, "o_till_bobby01")
    assert (await call(client, "POST", "/orders", order("T-0", "o_till_alice01", 500_000)))[0]
    coupon = {
        "openid": "o_till_alice01",
        "kind": "cash_10",
        "reason": "t",
        "idempotency_key": "k-till-1",
    }
    assert (await call(client, "POST", "/coupons", coupon))[0] == 201
    alice = await _member_id(client, "o_till_alice01")
    code = member_code(_key(client), alice, _step(client))
    status, body = await call(client, "POST", "/member-codes/resolve", {"code": code})
    assert status == 200, body
    assert body["openid"] == "o_till_alice01"
    assert (body["tier"], body["discount"], body["discount_rate"]) == ("gold", "9折", "0.9")
    assert body["points_multiplier"] == "1.5"
    assert [c["kind"] for c in body["coupons"]] == ["cash_10"]
    assert body["coupons"][0]["name"] == "无门槛10元券"
    # Seen over a shoulder after it was scanned: worth nothing.
    status, body = await call(client, "POST", "/member-codes/resolve", {"code": code})
    assert (status, body["error"]["code"]) == (410, "member_code_used")


async def test_old_forged_and_malformed_codes_are_refused(client: TestClient) -> None:
    await follower(client, "o_till_alice01")
    alice = await _member_id(client, "o_till_alice01")
    old = member_code(_key(client), alice, _step(client, back=2))
    status, body = await call(client, "POST", "/member-codes/resolve", {"code": old})
    assert (status, body["error"]["code"]) == (410, "member_code_expired")
    forged = member_code(b"someone else's key", alice, _step(client))
    status, body = await call(client, "POST", "/member-codes/resolve", {"code": forged})
    assert (status, body["error"]["code"]) == (404, "unknown_member_code")
    for junk in ("123", "12" + "3" * 16, 981234567890123456):
        status, body = await call(client, "POST", "/member-codes/resolve", {"code": junk})
        assert (status, body["error"]["field"]) == (422, "code")
    assert await _written(client) == (0, 0, 0)


async def test_an_order_with_the_code_credits_that_member(client: TestClient) -> None:
    await follower(client, "o_till_alice01")
    await follower(client, "o_till_bobby01")
    alice = await _member_id(client, "o_till_alice01")
    code = member_code(_key(client), alice, _step(client))
    assert (await call(client, "POST", "/member-codes/resolve", {"code": code}))[0] == 200
    body = order("TILL-1", amount_fen=20_000) | {"member_code": code}
    del body["openid"]
    status, answer = await call(client, "POST", "/orders", body)
    assert status == 201, answer
    assert (answer["points_earned"], answer["balance"]) == (200, 200)
    # The till retries: the same result, nothing twice.
    status, again = await call(client, "POST", "/orders", body)
    assert (status, again["balance"]) == (200, 200)
    status, view = await call(client, "GET", "/members/o_till_alice01")
    assert view["balance"] == 200
    status, view = await call(client, "GET", "/members/o_till_bobby01")
    assert view["balance"] == 0
    # Another order with the same code: refused, nothing written.
    before = await _written(client)
    other = body | {"order_id": "TILL-2"}
    status, answer = await call(client, "POST", "/orders", other)
    assert (status, answer["error"]["code"]) == (410, "member_code_used")
    assert await _written(client) == before


async def test_an_order_with_a_bad_code_writes_nothing(client: TestClient) -> None:
    await follower(client, "o_till_alice01")
    alice = await _member_id(client, "o_till_alice01")
    cases = [
        (member_code(_key(client), alice, _step(client, back=3)), 410, "member_code_expired"),
        (member_code(b"forger", alice, _step(client)), 404, "unknown_member_code"),
    ]
    for code, status, error in cases:
        body = order(f"BAD-{status}") | {"member_code": code}
        del body["openid"]
        answer = await call(client, "POST", "/orders", body)
        assert (answer[0], answer[1]["error"]["code"]) == (status, error)
    both = order("BAD-both") | {"member_code": member_code(_key(client), alice, _step(client))}
    status, answer = await call(client, "POST", "/orders", both)
    assert (status, answer["error"]["message"]) == (
        422,
        "give exactly one of openid, customer_ref and member_code",
    )
    assert await _written(client) == (0, 0, 0)


async def test_an_unresolved_live_code_is_claimed_by_the_order(client: TestClient) -> None:
    await follower(client, "o_till_alice01")
    alice = await _member_id(client, "o_till_alice01")
    body = order("LIVE-1") | {"member_code": member_code(_key(client), alice, _step(client))}
    del body["openid"]
    status, answer = await call(client, "POST", "/orders", body)
    assert (status, answer["balance"]) == (201, 100)
    status, answer = await call(
        client, "POST", "/member-codes/resolve", {"code": body["member_code"]}
    )
    assert status == 410


async def test_openapi_documents_the_member_code(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert set(doc["paths"]["/api/v1/member-codes/resolve"]["post"]["responses"]) >= {
        "200",
        "404",
        "410",
    }
    assert "member_code" in doc["components"]["schemas"]["OrderIn"]["properties"]
    assert "410" in doc["paths"]["/api/v1/orders"]["post"]["responses"]
