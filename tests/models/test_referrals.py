"""老带新: attribution rules, the share link and QR image, rewards, caps, 推荐之星, reversals."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot import wiring
from models.coupons import Coupon
from models.members import Member
from models.referrals import Newcomer, Referral, ReferralStar, refusal
from models.rules import ProgrammeRules
from scheduler.jobs import JOBS, JobContext
from tests.bot.api.test_api import call, follower, order
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, push
from tests.wechat_standin import Fault, WeChatStandIn

ALICE, BOB, CAROL = "o_ref_alice0001", "o_ref_bob000001", "o_ref_carol0001"
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
RULES = ProgrammeRules()


def _newcomer(**facts: Any) -> Newcomer:
    base: dict[str, Any] = {
        "member_id": 2,
        "existed_before": False,
        "followed_at": NOW,
        "has_orders": False,
        "already_referred": False,
    }
    return Newcomer(**(base | facts))


@pytest.mark.parametrize(
    ("source", "referrer", "facts", "expected"),
    [
        ("subscribe", 1, {}, None),
        ("subscribe", None, {}, "unknown_code"),
        ("subscribe", 2, {}, "self"),
        ("subscribe", 1, {"already_referred": True}, "already_referred"),
        ("subscribe", 1, {"existed_before": True}, "existing_member"),
        ("subscribe", 1, {"has_orders": True}, "existing_member"),
        # A follower scanning just after following (found the account by search first).
        ("scan", 1, {"followed_at": NOW - timedelta(hours=23)}, None),
        ("scan", 1, {"followed_at": NOW - timedelta(hours=25)}, "existing_member"),
        ("scan", 1, {"has_orders": True}, "existing_member"),
        # Known before this follow (a customer, an earlier unfollow), however recent the follow.
        ("scan", 1, {"existed_before": True}, "existing_member"),
        ("scan", 1, {"already_referred": True}, "already_referred"),
        ("scan", None, {}, "unknown_code"),
        ("scan", 2, {}, "self"),
    ],
)
def test_attribution_rules(
    source: str, referrer: int | None, facts: dict[str, Any], expected: str | None
) -> None:
    assert refusal(RULES, source, referrer, _newcomer(**facts), NOW) == expected


async def say(client: TestClient, openid: str, text: str) -> str:
    answer = await push(client, PLAIN, PLAIN.text(openid, text))
    assert answer.reply is not None, answer.body
    return answer.reply["Content"]


async def share_code(client: TestClient, openid: str) -> str:
    await follower(client, openid)
    reply = await say(client, openid, "推荐")
    found = re.search(r"/r/([A-Z0-9]{8})", reply)
    assert found, reply
    return found[1]


async def follow_through(client: TestClient, openid: str, code: str) -> str:
    answer = await push(client, PLAIN, PLAIN.event(openid, "subscribe", key=f"qrscene_ref_{code}"))
    assert answer.reply is not None
    return answer.reply["Content"]


async def referral_of(client: TestClient, openid: str) -> Referral | None:
    async with client.app[wiring.SESSIONS]() as session:
        member = await session.scalar(select(Member).where(Member.openid == openid))
        assert member is not None
        return await session.scalar(select(Referral).where(Referral.referee_id == member.id))


async def balance(client: TestClient, openid: str) -> int:
    status, body = await call(client, "GET", f"/members/{openid}")
    assert status == 200
    return int(body["balance"])


async def run_rewards(client: TestClient, at: datetime) -> str:
    app = client.app
    context = JobContext(app[wiring.SESSIONS], app[wiring.CONFIG].programme, app[wiring.OUTBOX], at)
    return await JOBS["referral-rewards"].run(context)


async def test_the_share_link_qr_code_and_image(client: TestClient, standin: WeChatStandIn) -> None:
    code = await share_code(client, ALICE)
    (created,) = standin.sent("/cgi-bin/qrcode/create")
    assert created["action_name"] == "QR_STR_SCENE"
    assert created["action_info"]["scene"]["scene_str"] == f"ref_{code}"
    assert created["expire_seconds"] == 30 * 86_400
    # The image was rendered here, uploaded, and sent in chat as an image message.
    (media_id,) = standin.media
    assert standin.media[media_id].startswith(b"\x89PNG")
    sent = await eventually(
        lambda: _async([m for m in standin.sent() if m.get("msgtype") == "image"])
    )
    assert sent == [{"touser": ALICE, "msgtype": "image", "image": {"media_id": media_id}}]
    # Asking again reuses the code and the uploaded image.
    assert f"/r/{code}" in await say(client, ALICE, "邀请")
    assert len(standin.sent("/cgi-bin/qrcode/create")) == 1
    assert len(standin.media) == 1

    page = await client.get(f"/r/{code}")
    html = await page.text()
    assert page.status == 200
    assert "<svg" in html
    assert "新人立减20元" in html
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for bad in ("ZZZZZZZZ", "short", "../../etc"):
        assert (await client.get(f"/r/{bad}")).status == 404


async def test_wechat_down_still_gives_the_link(client: TestClient, standin: WeChatStandIn) -> None:
    standin.fail_next("/cgi-bin/qrcode/create", *[Fault(http_status=500)] * 3)
    await follower(client, ALICE)
    reply = await say(client, ALICE, "推荐")
    assert "/r/" in reply
    assert "二维码图片暂时无法生成" in reply
    code = re.search(r"/r/([A-Z0-9]{8})", reply)
    assert code
    page = await (await client.get(f"/r/{code[1]}")).text()
    assert "<svg" not in page
    assert "二维码已过期" in page


async def test_reward_after_the_return_window_through_the_standin(
    client: TestClient, standin: WeChatStandIn
) -> None:
    code = await share_code(client, ALICE)
    assert "好友邀请" in await follow_through(client, BOB, code)
    referral = await referral_of(client, BOB)
    assert referral is not None
    assert referral.status == "joined"
    assert referral.source == "subscribe"

    assert (await call(client, "POST", "/orders", order("R-1", BOB, 30_000)))[0] == 201
    referral = await referral_of(client, BOB)
    assert referral is not None
    assert referral.status == "pending"
    stats = await say(client, ALICE, "我的推荐")
    assert "已邀请关注：1位" in stats
    assert "已完成首单：1位" in stats
    assert "待发放" in stats
    assert "您有1位好友已下单" in await say(client, ALICE, "推荐")

    before = await balance(client, ALICE)
    assert await run_rewards(client, datetime.now(UTC)) == "referrals settled: none due"
    outcome = await run_rewards(client, datetime.now(UTC) + timedelta(days=8))
    assert outcome == "referrals settled: rewarded 1"
    assert await balance(client, ALICE) == before + 200
    async with client.app[wiring.SESSIONS]() as session:
        coupons = list((await session.scalars(select(Coupon))).all())
    assert [(c.kind, c.status) for c in coupons] == [("newcomer_20", "issued")]
    # The referrer is told (a customer-service message: Alice wrote within 48 hours).
    await eventually(
        lambda: _async([m for m in standin.sent() if "推荐奖励已到账" in str(m.get("text"))])
    )
    # Running again rewards nothing twice; a second order changes nothing.
    assert await run_rewards(client, datetime.now(UTC) + timedelta(days=9)) == (
        "referrals settled: none due"
    )
    assert (await call(client, "POST", "/orders", order("R-2", BOB, 30_000)))[0] == 201
    assert await balance(client, ALICE) == before + 200
    assert "获得推荐奖励：200积分" in await say(client, ALICE, "我的推荐")


async def test_a_refund_inside_the_window_cancels_the_reward(client: TestClient) -> None:
    code = await share_code(client, ALICE)
    await follow_through(client, BOB, code)
    await call(client, "POST", "/orders", order("R-1", BOB, 30_000))
    status, _ = await call(client, "POST", "/orders/R-1/refund", {"refund_id": "RF-1"})
    assert status == 200
    before = await balance(client, ALICE)
    assert await run_rewards(client, datetime.now(UTC) + timedelta(days=8)) == (
        "referrals settled: none due"
    )
    referral = await referral_of(client, BOB)
    assert referral is not None
    assert referral.status == "cancelled"
    assert await balance(client, ALICE) == before


async def test_without_a_window_the_reward_is_immediate_and_clawed_back(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(programme={"referrals": {"return_window_days": 0}})
    code = await share_code(client, ALICE)
    await follow_through(client, BOB, code)
    await call(client, "POST", "/orders", order("R-1", BOB, 30_000))
    assert await balance(client, ALICE) == 200  # rewarded with the order
    # Alice spends 150 of the 200 before Bob's order is refunded: only 50 can come back.
    status, _ = await call(
        client,
        "POST",
        f"/members/{ALICE}/points",
        {"points": -150, "reason": "兑换礼品", "idempotency_key": "redeem-1", "kind": "redeem"},
    )
    assert status == 200
    assert (await call(client, "POST", "/orders/R-1/refund", {"refund_id": "RF-1"}))[0] == 200
    assert await balance(client, ALICE) == 0  # never negative
    referral = await referral_of(client, BOB)
    assert referral is not None
    assert referral.status == "reversed"
    async with client.app[wiring.SESSIONS]() as session:
        coupon = await session.scalar(select(Coupon))
    assert coupon is not None
    assert coupon.status == "revoked"
    status, body = await call(
        client, "POST", f"/coupons/{coupon.code}/redeem", {"order_id": "R-9", "openid": BOB}
    )
    assert (status, body["error"]["code"]) == (409, "coupon_revoked")


async def test_no_referral_for_members_self_or_unknown_codes(client: TestClient) -> None:
    code = await share_code(client, ALICE)
    # Alice scanning her own code, a follower of long standing, and a malformed scene.
    await push(client, PLAIN, PLAIN.event(ALICE, "SCAN", key=f"ref_{code}"))
    await follower(client, CAROL)
    await push(client, PLAIN, PLAIN.event(CAROL, "unsubscribe"))
    assert "好友邀请" not in await follow_through(client, CAROL, code)  # a returning follower
    answer = await push(client, PLAIN, PLAIN.event(BOB, "subscribe", key="qrscene_ref_!!"))
    assert answer.reply is not None
    assert "好友邀请" not in answer.reply["Content"]
    async with client.app[wiring.SESSIONS]() as session:
        assert list((await session.scalars(select(Referral))).all()) == []
    # A newcomer who followed a moment ago by search, then scans: first touch wins.
    await push(client, PLAIN, PLAIN.event(BOB, "SCAN", key=f"ref_{code}"))
    referral = await referral_of(client, BOB)
    assert referral is not None
    assert referral.source == "scan"
    other = await share_code(client, "o_ref_dave00001")
    await push(client, PLAIN, PLAIN.event(BOB, "SCAN", key=f"ref_{other}"))
    again = await referral_of(client, BOB)
    assert again is not None
    assert again.id == referral.id
    assert again.code == code


async def test_a_follower_of_old_who_refollows_then_scans_is_no_newcomer(
    client: TestClient,
) -> None:
    code = await share_code(client, ALICE)
    await follower(client, CAROL)
    async with client.app[wiring.SESSIONS].begin() as session:  # Carol first came a week ago
        await session.execute(
            update(Member)
            .where(Member.openid == CAROL)
            .values(created_at=datetime.now(UTC) - timedelta(days=7))
        )
    later = int(time.time()) + 5  # distinct events, not WeChat's retries of one
    await push(client, PLAIN, PLAIN.event(CAROL, "unsubscribe", created=later))
    await push(client, PLAIN, PLAIN.event(CAROL, "subscribe", created=later + 1))  # by search
    await push(client, PLAIN, PLAIN.event(CAROL, "SCAN", key=f"ref_{code}", created=later + 2))
    assert (await balance(client, CAROL)) == 0  # following again worked
    async with client.app[wiring.SESSIONS]() as session:
        carol = await session.scalar(select(Member).where(Member.openid == CAROL))
    assert carol is not None
    assert carol.subscribed
    assert await referral_of(client, CAROL) is None


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Through the code itself: only someone the programme never knew.
        pytest.param(["follow through"], "subscribe", id="follow-through-code"),
        pytest.param(["customer", "follow through"], None, id="customer-follows-through-code"),
        pytest.param(["follow", "unfollow", "follow through"], None, id="refollow-through-code"),
        # Following by search first, then scanning: the same rules, and the grace.
        pytest.param(["follow", "scan"], "scan", id="scan-just-after-follow"),
        pytest.param(["follow 23 h ago", "scan"], "scan", id="scan-within-grace"),
        pytest.param(["follow 25 h ago", "scan"], None, id="scan-past-grace"),
        pytest.param(["follow", "unfollow", "follow", "scan"], None, id="scan-after-refollow"),
        pytest.param(["customer", "follow", "scan"], None, id="scan-by-customer"),
        pytest.param(["message", "scan"], None, id="scan-by-follower-never-seen-following"),
        pytest.param(["follow", "order", "scan"], None, id="scan-after-an-order"),
        pytest.param(["follow", "scan", "scan other"], "scan", id="first-scan-wins"),
        pytest.param(["follow through", "scan other"], "subscribe", id="first-touch-wins"),
    ],
)
async def test_a_scan_is_held_to_the_rules_of_a_follow(
    client: TestClient, steps: list[str], expected: str | None
) -> None:
    code = await share_code(client, ALICE)
    other = await share_code(client, CAROL)
    base = int(time.time())
    for n, step in enumerate(steps):
        created = base + n  # distinct events, not WeChat's retries of one
        match step.split(" "):
            case ["follow", "through"]:
                xml = PLAIN.event(BOB, "subscribe", key=f"qrscene_ref_{code}", created=created)
            case ["follow", hours, "h", "ago"]:
                xml = PLAIN.event(BOB, "subscribe", created=base - int(hours) * 3600)
            case ["follow"]:
                xml = PLAIN.event(BOB, "subscribe", created=created)
            case ["unfollow"]:
                xml = PLAIN.event(BOB, "unsubscribe", created=created)
            case ["scan"]:
                xml = PLAIN.event(BOB, "SCAN", key=f"ref_{code}", created=created)
            case ["scan", "other"]:
                xml = PLAIN.event(BOB, "SCAN", key=f"ref_{other}", created=created)
            case ["message"]:
                xml = PLAIN.text(BOB, "你好", created=created)
            case ["customer"]:
                assert (await call(client, "PUT", f"/members/{BOB}", {"name": "老顾客"}))[0] == 201
                continue
            case ["order"]:
                assert (await call(client, "POST", "/orders", order("S-1", BOB)))[0] == 201
                continue
        assert (await push(client, PLAIN, xml)).status == 200, step
    referral = await referral_of(client, BOB)
    assert (referral.source if referral else None) == expected
    if referral is not None:
        assert referral.code == code
    stats = await say(client, ALICE, "我的推荐")
    assert ("已邀请关注：1位" in stats) == (expected is not None), stats


async def test_daily_cap_and_the_star_once_a_quarter(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(
        programme={"referrals": {"daily_reward_cap": 2, "star_threshold": 2}}
    )
    code = await share_code(client, ALICE)
    friends = [f"o_ref_friend{n:04d}" for n in range(3)]
    for n, friend in enumerate(friends):
        await follow_through(client, friend, code)
        await call(client, "POST", "/orders", order(f"F-{n}", friend, 30_000))
    outcome = await run_rewards(client, datetime.now(UTC) + timedelta(days=8))
    assert outcome == "referrals settled: capped 1, rewarded 2"
    # Two rewards (200 each) and the star's 500, once.
    assert await balance(client, ALICE) == 900
    async with client.app[wiring.SESSIONS]() as session:
        stars = list((await session.scalars(select(ReferralStar))).all())
    assert len(stars) == 1
    assert stars[0].referrals == 2
    assert "推荐之星" in await say(client, ALICE, "我的推荐")


async def _async(value: Any) -> Any:
    return value
