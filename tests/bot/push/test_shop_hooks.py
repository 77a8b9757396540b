"""Events for shop systems: a receiver on 127.0.0.1 gets each event once, signed as the README
says, retried with backoff through failures, given up after the retry window and replayable.
The receiver is on a private address, so these tests allow it explicitly
(``allow_private_targets``); by default such targets are refused at registration and when
connecting."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot import wiring
from bot.push.shop_hooks import HookWorker, fan_out_all, hooks_outbox, public_address
from bot.wiring import questions_store
from models.base import utcnow
from models.events import MemberEvent
from models.hooks import HookDelivery, add_subscriber
from models.members import find_member
from models.personal_data import erase_member
from models.ratings import OpenQuestion
from models.staff import AuditEntry
from scheduler.jobs import JOBS, JobContext
from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import add_staff, csrf_of, login
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, push
from tests.models.test_ratings import say
from tests.models.test_referrals import ALICE, BOB, follow_through, share_code
from tests.services import free_port

OPENID = "o_hook_member01"
ALL_TYPES = [
    "points.changed",
    "tier.changed",
    "referral.rewarded",
    "rating.low",
    "member.unsubscribed",
]
# The receivers listen on 127.0.0.1, which only this setting lets subscribers reach.
FAST = {"retry_base_seconds": 0.1, "retry_max_seconds": 0.2, "allow_private_targets": True}


@dataclass
class Receiver:
    """A shop system's endpoint: verifies each request as the README shows, and answers
    ``statuses`` in turn (then 200)."""

    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Loyalty-Timestamp"]
        expected = hmac.new(
            self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        self.received.append(
            {
                "valid": hmac.compare_digest(
                    f"v1={expected}", request.headers["X-Loyalty-Signature"]
                )
                and abs(time.time() - int(stamp)) <= 300,
                "key": request.headers["X-Loyalty-Delivery"],
                "type": request.headers["X-Loyalty-Event"],
                "body": json.loads(body),
            }
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/events"))
    return receiver


async def subscribe(
    client: TestClient, receiver: Receiver, types: list[str], name: str = "erp"
) -> int:
    status, body = await call(
        client, "POST", "/hooks", {"name": name, "url": receiver.url, "types": types}
    )
    assert status == 201, body
    receiver.secret = body["secret"]
    return int(body["id"])


async def rows(client: TestClient) -> list[HookDelivery]:
    async with client.app[wiring.SESSIONS]() as session:
        return list((await session.scalars(select(HookDelivery).order_by(HookDelivery.id))).all())


async def settled(client: TestClient, count: int) -> list[HookDelivery]:
    found = await rows(client)
    done = [r for r in found if r.status in ("delivered", "failed")]
    return found if len(found) >= count and len(done) == len(found) else []


async def fanned_out(client: TestClient) -> bool:
    """True once every member event has been fanned out to the subscribers of the time."""
    async with client.app[wiring.SESSIONS]() as session:
        pending = await session.scalar(
            select(MemberEvent.id).where(MemberEvent.hooked_at.is_(None))
        )
    return pending is None


async def test_each_event_reaches_its_subscriber_once_and_signed(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks=FAST)
    await follower(client, OPENID)  # before anyone subscribed: not sent to the new subscriber
    await call(client, "POST", "/orders", order("H-0", OPENID, amount_fen=100))
    await eventually(lambda: fanned_out(client))
    subscriber = await subscribe(client, receiver, ALL_TYPES)
    await subscribe(client, Receiver(url=receiver.url), ["referral.rewarded"], name="crm")

    # ¥2,000: points, and basic → silver; then a low rating; then an unfollow.
    status, _ = await call(client, "POST", "/orders", order("H-1", OPENID, amount_fen=200_000))
    assert status == 201
    question = OpenQuestion("csat_conversation:C-9", "csat", "conversation", "C-9", time.time())
    await questions_store(client.app[wiring.REDIS], client.app[wiring.CONFIG]).open(
        OPENID, question
    )
    await say(client, "1 太慢了", OPENID)
    await push(client, PLAIN, PLAIN.event(OPENID, "unsubscribe"))

    delivered = await eventually(lambda: settled(client, 4))
    assert [r.status for r in delivered] == ["delivered"] * 4
    assert {r.subscriber_id for r in delivered} == {subscriber}
    assert all(r["valid"] for r in receiver.received)
    events = {r["type"]: r["body"] for r in receiver.received}
    assert sorted(events) == ["member.unsubscribed", "points.changed", "rating.low", "tier.changed"]
    assert len(receiver.received) == 4  # each once
    assert events["points.changed"]["data"]["points"] == 2000
    assert events["points.changed"]["member"]["openid"] == OPENID
    tier_changed = {"from": "basic", "to": "silver", "levels": 1, "gifts": []}  # gifts paused
    assert events["tier.changed"]["data"] == tier_changed
    assert events["rating.low"]["data"]["score"] == 1
    assert events["rating.low"]["data"]["comment"] == "太慢了"
    for received in receiver.received:
        assert received["key"] == f"{received['body']['id']}.{subscriber}"

    status, log = await call(client, "GET", f"/hooks/{subscriber}/deliveries")
    assert status == 200
    assert [d["status"] for d in log["deliveries"]] == ["delivered"] * 4
    status, listed = await call(client, "GET", "/hooks")
    assert "secret" not in listed["subscribers"][0]


async def test_a_failing_receiver_is_retried_with_the_same_key_until_it_answers(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks=FAST)
    await follower(client, OPENID)
    subscriber = await subscribe(client, receiver, ["points.changed"])
    receiver.statuses = [500, 503]
    await call(client, "POST", "/orders", order("H-2", OPENID))
    (row,) = await eventually(lambda: settled(client, 1))
    assert (row.status, row.attempts, row.response_status) == ("delivered", 3, 200)
    assert len({r["key"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3
    assert all(r["valid"] for r in receiver.received)
    _, log = await call(client, "GET", f"/hooks/{subscriber}/deliveries")
    assert log["deliveries"][0]["attempts"] == 3


async def test_after_the_retry_window_it_fails_and_a_replay_sends_it_again(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    # Two seconds of retries, against a receiver down meanwhile.
    client = await app_factory(hooks={**FAST, "retry_hours": 2 / 3600})
    await follower(client, OPENID)
    await subscribe(client, receiver, ["points.changed"])
    receiver.statuses = [503] * 1000
    await call(client, "POST", "/orders", order("H-3", OPENID))
    (row,) = await eventually(lambda: settled(client, 1))
    assert (row.status, row.response_status, row.error) == ("failed", 503, "HTTP 503")
    assert row.attempts > 2

    receiver.statuses = []
    received = len(receiver.received)
    status, body = await call(client, "POST", f"/hooks/deliveries/{row.id}/replay")
    assert (status, body["status"], body["attempts"]) == (202, "queued", 0)
    (row,) = await eventually(lambda: settled(client, 1))
    assert (row.status, row.attempts) == ("delivered", 1)
    assert len(receiver.received) == received + 1
    assert receiver.received[-1]["key"] == receiver.received[0]["key"]

    status, body = await call(client, "POST", "/hooks/deliveries/999999/replay")
    assert (status, body["error"]["code"]) == (404, "unknown_delivery")


async def test_an_admin_sees_the_log_in_the_console_and_replays_from_it(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks={**FAST, "retry_hours": 1 / 3600})
    await follower(client, OPENID)
    subscriber = await subscribe(client, receiver, ["points.changed"])
    receiver.statuses = [502] * 1000
    await call(client, "POST", "/orders", order("H-6", OPENID))
    (row,) = await eventually(lambda: settled(client, 1))
    assert row.status == "failed"
    await add_staff(client, "boss", "admin")
    assert await login(client, "boss") == 303
    page = await (await client.get(f"/console/hooks?subscriber={subscriber}")).text()
    assert "erp" in page
    assert f'<tr data-status="failed">\n      <td>{row.id}</td>' in page
    assert "502 HTTP 502" in page

    receiver.statuses = []
    token = await csrf_of(client, "/console/hooks")
    response = await client.post(
        f"/console/hooks/deliveries/{row.id}/replay",
        data={"csrf": token, "subscriber": str(subscriber)},
        allow_redirects=False,
    )
    assert (response.status, response.headers["Location"]) == (
        303,
        f"/console/hooks?subscriber={subscriber}",
    )
    (row,) = await eventually(lambda: settled(client, 1))
    assert row.status == "delivered"
    async with client.app[wiring.SESSIONS]() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert "hook_replay" in actions
    # Without the CSRF token nothing is replayed.
    response = await client.post(f"/console/hooks/deliveries/{row.id}/replay", data={})
    assert response.status == 403


async def test_a_delivery_a_dead_worker_left_sending_goes_again(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    # No consumers in the app: the test plays the dead worker and the one that takes over.
    client = await app_factory(hooks={**FAST, "consumers": 0}, delivery={"workers": 0})
    await follower(client, OPENID)
    await subscribe(client, receiver, ["points.changed"])
    await call(client, "POST", "/orders", order("H-4", OPENID))
    worker = HookWorker(
        name="test-hooks",
        redis=client.app[wiring.REDIS],
        sessions=client.app[wiring.SESSIONS],
        http=client.session,
        config=client.app[wiring.CONFIG].hooks,
    )
    await fan_out_all(client.app[wiring.SESSIONS], hooks_outbox(worker.redis), worker.config)
    (row,) = await rows(client)
    stale = utcnow() - timedelta(minutes=11)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(HookDelivery).values(status="sending", attempts=1, updated_at=stale)
        )
    await worker.housekeeping(sweep=True)
    await asyncio.sleep(0)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop, block_ms=100))
    (row,) = await eventually(lambda: settled(client, 1))
    stop.set()
    await running
    assert (row.status, row.attempts) == ("delivered", 2)
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"name": "x", "url": "ftp://shop.example/e", "types": ["points.changed"]}, 422, "url"),
        ({"name": "x", "url": "https://shop.example/e", "types": ["points.gone"]}, 422, "types.0"),
        ({"name": "x", "url": "https://shop.example/e", "types": []}, 422, "types"),
        ({"name": "a b", "url": "https://shop.example/e", "types": ["rating.low"]}, 422, "name"),
    ],
)
async def test_bad_subscriptions_are_refused(
    client: TestClient, body: dict[str, Any], code: int, field: str
) -> None:
    status, answer = await call(client, "POST", "/hooks", body)
    assert (status, answer["error"]["field"]) == (code, field)
    _, listed = await call(client, "GET", "/hooks")
    assert listed["subscribers"] == []


async def test_a_taken_name_conflicts_and_a_removed_subscriber_gets_nothing_more(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks=FAST)
    await follower(client, OPENID)
    subscriber = await subscribe(client, receiver, ["points.changed"])
    status, body = await call(
        client, "POST", "/hooks", {"name": "erp", "url": receiver.url, "types": ["rating.low"]}
    )
    assert (status, body["error"]["code"]) == (409, "name_taken")
    status, body = await call(client, "DELETE", f"/hooks/{subscriber}")
    assert (status, body["active"]) == (200, False)
    await call(client, "POST", "/orders", order("H-5", OPENID))

    await eventually(lambda: fanned_out(client))
    assert await rows(client) == []
    status, _ = await call(client, "DELETE", "/hooks/424242")
    assert status == 404


async def test_events_and_deliveries_acted_on_are_pruned_after_30_days(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks=FAST)
    await follower(client, OPENID)
    await subscribe(client, receiver, ["points.changed"])
    await call(client, "POST", "/orders", order("H-7", OPENID))
    await eventually(lambda: settled(client, 1))
    receiver.statuses = [503] * 1000  # the next one stays queued, retrying
    await call(client, "POST", "/orders", order("H-8", OPENID))
    await eventually(lambda: fanned_out(client))
    sessions = client.app[wiring.SESSIONS]
    context = JobContext(
        sessions, client.app[wiring.CONFIG].programme, client.app[wiring.OUTBOX], utcnow()
    )
    assert (await JOBS["prune-events"].run(context)).startswith("0 shop-event deliveries")

    # A month on, all but the delivery still being retried (and its event) are gone.
    later = replace(context, now=utcnow() + timedelta(days=31))
    outcome = await JOBS["prune-events"].run(later)
    assert outcome.startswith("1 shop-event deliveries and ")
    async with sessions() as session:
        (kept,) = (await session.scalars(select(HookDelivery))).all()
        events = (await session.scalars(select(MemberEvent))).all()
    assert kept.status == "queued"
    assert [event.id for event in events] == [kept.event_id]


async def test_a_referral_reward_reaches_the_subscriber_with_the_referrer(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    # No return window: the reward is settled with the friend's first order.
    client = await app_factory(hooks=FAST, programme={"referrals": {"return_window_days": 0}})
    await subscribe(client, receiver, ["referral.rewarded"])
    code = await share_code(client, ALICE)
    await follow_through(client, BOB, code)
    status, _ = await call(client, "POST", "/orders", order("H-9", BOB, 30_000))
    assert status == 201
    (row,) = await eventually(lambda: settled(client, 1))
    assert row.status == "delivered"
    (received,) = receiver.received
    assert received["valid"]
    assert received["type"] == "referral.rewarded"
    assert received["body"]["member"]["openid"] == ALICE
    assert received["body"]["data"]["points"] == 200


async def test_an_erased_member_s_unsent_events_never_go(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    client = await app_factory(hooks=FAST)
    await follower(client, OPENID)
    await subscribe(client, receiver, ["points.changed", "member.unsubscribed"])
    receiver.statuses = [503] * 1000
    await call(client, "POST", "/orders", order("H-10", OPENID))
    await eventually(lambda: fanned_out(client))
    sessions = client.app[wiring.SESSIONS]
    async with sessions.begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        await erase_member(session, member, utcnow())
    received = len(receiver.received)
    await asyncio.sleep(1.0)  # retries were due every 0.1-0.2 s
    assert await rows(client) == []
    assert len(receiver.received) <= received + 1  # at most the attempt already in flight


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://localhost:8080/events",
        "http://10.1.2.3/events",
        "http://172.16.0.9/events",
        "http://192.168.1.20/events",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/events",
        "http://0.0.0.0:8080/events",
        "http://[::1]:8080/events",
        "http://[fe80::1]/events",
        "http://[fd00::5]/events",
        "http://[::ffff:127.0.0.1]/events",
        "http://2130706433/events",  # 127.0.0.1 as one number
        "https://no-such-host.invalid/events",
    ],
)
async def test_private_and_unresolvable_targets_are_refused_at_registration(
    client: TestClient, url: str
) -> None:
    body = {"name": "probe", "url": url, "types": ["points.changed"]}
    status, answer = await call(client, "POST", "/hooks", body)
    assert (status, answer["error"]["field"]) == (422, "url"), answer
    _, listed = await call(client, "GET", "/hooks")
    assert listed["subscribers"] == []


async def test_a_public_target_is_registered(client: TestClient) -> None:
    body = {"name": "erp", "url": "https://8.8.8.8/events", "types": ["points.changed"]}
    assert (await call(client, "POST", "/hooks", body))[0] == 201


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.2", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert public_address(address) is public


async def test_a_target_that_turns_private_is_refused_when_connecting(
    app_factory: Callable[..., Any], receiver: Receiver
) -> None:
    # Private targets are not allowed. Two subscribers got in anyway: a name that resolved to
    # a public address at registration and to 127.0.0.1 now (DNS rebinding), and an IP
    # literal stored before the rule. Neither is connected to.
    client = await app_factory(hooks={**FAST, "allow_private_targets": False, "retry_hours": 1e-3})
    async with client.app[wiring.SESSIONS].begin() as session:
        for name, url in (
            ("rebound", receiver.url.replace("127.0.0.1", "localhost")),
            ("literal", receiver.url),
        ):
            await add_subscriber(session, name, url, ["points.changed"], "s" * 64, utcnow())
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("H-11", OPENID))
    delivered = await eventually(lambda: settled(client, 2))
    assert [(r.status, r.error, r.response_status) for r in delivered] == [
        ("failed", "refused_address", None)
    ] * 2
    assert receiver.received == []


async def test_a_failed_connection_is_recorded_as_a_category_not_its_text(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(hooks={**FAST, "retry_hours": 1e-3})
    closed = f"http://127.0.0.1:{free_port()}/events"  # nothing listens there
    status, body = await call(
        client, "POST", "/hooks", {"name": "erp", "url": closed, "types": ["points.changed"]}
    )
    assert status == 201
    await follower(client, OPENID)
    await call(client, "POST", "/orders", order("H-12", OPENID))
    await eventually(lambda: settled(client, 1))
    _, log = await call(client, "GET", f"/hooks/{body['id']}/deliveries")
    (delivery,) = log["deliveries"]
    assert (delivery["status"], delivery["error"]) == ("failed", "connect_error")
