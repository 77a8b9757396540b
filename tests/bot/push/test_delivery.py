"""The push pipeline against the WeChat stand-in: the right channel, once, whatever fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from bot import wiring
from bot.push.outbox import DELAYED, GROUP, STREAM, DeliveryWorker
from models.base import utcnow
from models.deliveries import SERVICE, SURVEY, Claimed, Delivery, PlannedPush, TemplateReceipt, plan
from models.members import find_member
from tests.bot.api.test_api import call, follower, order
from tests.helpers import PLAIN, push
from tests.wechat_standin import Fault, WeChatStandIn

OPENID = "o_push_member01"
TEMPLATE = "/cgi-bin/message/template/send"
TIER_TEMPLATE = {
    "tier_upgraded": {
        "template_id": "TPL_TIER_UP",
        "fields": {"first": "title", "keyword1": "tier", "remark": "note"},
    }
}


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll ``check`` until it returns something truthy (the pipeline runs in the background);
    the ceiling is for a loaded machine, the poll goes on as soon as it holds."""
    async with asyncio.timeout(60):
        while not (result := await check()):  # noqa: ASYNC110 - the state is in the database
            await asyncio.sleep(0.05)
    return result


async def deliveries(client: TestClient) -> list[Delivery]:
    """The pushes planned, but for the rating questions that orders plan."""
    async with client.app[wiring.SESSIONS]() as session:
        query = select(Delivery).where(Delivery.category != SURVEY).order_by(Delivery.id)
        return list((await session.scalars(query)).all())


async def upgrade(client: TestClient, order_id: str = "UP-1") -> None:
    """One ¥2,000 order: basic → silver."""
    status, _ = await call(client, "POST", "/orders", order(order_id, OPENID, amount_fen=200_000))
    assert status == 201


async def finished(client: TestClient) -> list[Delivery]:
    rows = await deliveries(client)
    return rows if rows and all(r.status not in ("queued", "sending") for r in rows) else []


async def test_tier_upgrade_goes_once_inside_the_window(
    client: TestClient, standin: WeChatStandIn
) -> None:
    await follower(client, OPENID)  # a follow opens a 1-minute window with 3 slots
    await upgrade(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.purpose, row.status, row.channel) == ("tier_upgraded", "sent", "custom")
    sent = [m for m in standin.sent() if m["touser"] == OPENID]
    assert len(sent) == 1
    assert sent[0]["text"]["content"].startswith("🎉 恭喜您升级为【银卡会员】")
    # The event is processed: another upgrade-free order plans nothing new.
    await call(client, "POST", "/orders", order("UP-2", OPENID, amount_fen=100))
    await asyncio.sleep(1.5)
    assert len(await deliveries(client)) == 1
    assert len([m for m in standin.sent() if m["touser"] == OPENID]) == 1


async def test_a_configured_template_is_used_and_its_receipt_recorded(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"templates": TIER_TEMPLATE})
    await follower(client, OPENID)
    await upgrade(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.channel) == ("sent", "template")
    (body,) = standin.sent(TEMPLATE)
    assert body["template_id"] == "TPL_TIER_UP"
    assert body["data"]["keyword1"] == {"value": "银卡会员"}
    assert standin.sent() == []  # no customer-service copy as well
    receipt = PLAIN.event(
        OPENID,
        "TEMPLATESENDJOBFINISH",
        extra=f"<MsgID>{row.wechat_msgid}</MsgID><Status><![CDATA[failed:user block]]></Status>",
    )
    answer = await push(client, PLAIN, receipt)
    assert (answer.status, answer.body) == (200, "success")

    async def final() -> str | None:
        return (await deliveries(client))[0].final_status

    assert await eventually(final) == "failed:user block"


async def test_a_send_left_unanswered_is_recorded_and_never_sent_twice(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"templates": TIER_TEMPLATE}, api_timeout_seconds=1.0)
    await follower(client, OPENID)
    # WeChat takes the message but answers after the worker has stopped waiting (the token
    # fetch before it gets the client's whole second, however busy the machine).
    standin.fail_next(TEMPLATE, Fault(delay=3.0))
    await upgrade(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.reason, row.attempts) == ("failed", "unanswered", 1)
    await asyncio.sleep(1.0)
    assert len(standin.sent(TEMPLATE)) == 1


async def test_without_window_or_template_the_push_is_skipped_with_its_reason(
    client: TestClient, standin: WeChatStandIn
) -> None:
    await follower(client, OPENID)
    await client.app[wiring.REDIS].delete(f"cs:window:{OPENID}")  # the follow was long ago
    await upgrade(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.reason) == ("skipped", "no_channel")
    assert standin.sent() == []
    assert standin.sent(TEMPLATE) == []


async def test_an_unfollowed_member_is_skipped(client: TestClient, standin: WeChatStandIn) -> None:
    await follower(client, OPENID)
    await push(client, PLAIN, PLAIN.event(OPENID, "unsubscribe"))
    await upgrade(client)
    (row,) = await eventually(lambda: finished(client))
    assert (row.status, row.reason) == ("skipped", "unsubscribed")
    assert standin.sent() == []


async def _planned(client: TestClient, key: str = "test:1") -> int:
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        payload = {"text": "您的积分有变动", "fields": {"title": "t", "tier": "x", "note": "n"}}
        (delivery_id,) = await plan(
            session, "tier_upgraded", SERVICE, [PlannedPush(member.id, key, payload)], utcnow()
        )
    return delivery_id


def _worker(
    client: TestClient, on_sent: Callable[[Claimed], Awaitable[None]] | None = None, **config: Any
) -> DeliveryWorker:
    """A delivery worker of the app's, with ``config`` overriding ``[delivery]``."""
    app = client.app
    settings = app[wiring.CONFIG].delivery.model_copy(update=config)
    return DeliveryWorker(
        name="test-worker",
        redis=app[wiring.REDIS],
        sessions=app[wiring.SESSIONS],
        wechat=app[wiring.WECHAT],
        outbox=app[wiring.OUTBOX],
        config=settings,
        zone=app[wiring.CONFIG].programme.zone,
        rules=app[wiring.CONFIG].programme,
        on_sent=on_sent,
    )


async def test_planning_twice_plans_once(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(delivery={"workers": 0})
    await follower(client, OPENID)
    await _planned(client, "birthday:2026:1")
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await find_member(session, OPENID)
        assert member is not None
        again = await plan(
            session,
            "birthday",
            SERVICE,
            [PlannedPush(member.id, "birthday:2026:1", {"text": "x"})],
            utcnow(),
        )
    assert again == []
    assert len(await deliveries(client)) == 1


async def test_transient_errors_come_back_later_and_send_once(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0, "templates": TIER_TEMPLATE})
    await follower(client, OPENID)
    delivery_id = await _planned(client)
    worker = _worker(client)
    # The client's own three quick attempts all meet "system busy".
    standin.fail_next(TEMPLATE, Fault(errcode=-1), Fault(errcode=-1), Fault(http_status=503))
    assert await worker.deliver(delivery_id) == "retrying"
    (row,) = await deliveries(client)
    assert (row.status, row.attempts, row.errcode) == ("queued", 1, None)
    assert row.not_before > utcnow() + timedelta(seconds=10)
    assert await client.app[wiring.REDIS].zscore(DELAYED, str(delivery_id)) is not None
    assert await worker.deliver(delivery_id) == "not_claimed"  # not due yet
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(update(Delivery).values(not_before=utcnow()))
    assert await worker.deliver(delivery_id) == "sent"
    assert await worker.deliver(delivery_id) == "not_claimed"
    assert len(standin.sent(TEMPLATE)) == 1
    (row,) = await deliveries(client)
    assert (row.status, row.attempts) == ("sent", 2)


async def test_permanent_errors_are_recorded_not_retried(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0, "templates": TIER_TEMPLATE})
    await follower(client, OPENID)
    delivery_id = await _planned(client)
    standin.fail_next(TEMPLATE, Fault(errcode=40003))
    assert await _worker(client).deliver(delivery_id) == "failed"
    (row,) = await deliveries(client)
    assert (row.status, row.errcode, row.attempts, row.reason) == (
        "failed",
        40003,
        1,
        "wechat_error",
    )
    assert standin.sent(TEMPLATE) == []
    assert await _worker(client).deliver(delivery_id) == "not_claimed"  # never tried again


async def test_a_window_wechat_says_is_closed_is_not_used_again(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await follower(client, OPENID)
    first, second = await _planned(client, "a:1"), await _planned(client, "a:2")
    standin.fail_next("/cgi-bin/message/custom/send", Fault(errcode=45015))
    worker = _worker(client)
    assert await worker.deliver(first) == "skipped"
    assert await worker.deliver(second) == "skipped"  # without asking WeChat again
    rows = await deliveries(client)
    assert [(r.reason, r.errcode) for r in rows] == [("no_channel", 45015), ("no_channel", None)]
    assert standin.sent() == []


@pytest.mark.parametrize("server", ["redis-server", "embedded"])
async def test_a_dead_workers_sends_are_taken_over_and_never_repeated(
    app_factory: Callable[..., Any],
    standin: WeChatStandIn,
    server: str,
    request: pytest.FixtureRequest,
) -> None:
    # The embedded default is Redis 6.2, whose XAUTOCLAIM answers in two parts, not three.
    redis_at = request.getfixturevalue("embedded_redis_url") if server == "embedded" else None
    client = await app_factory(
        delivery={"workers": 0, "templates": TIER_TEMPLATE}, redis_at=redis_at
    )
    redis = client.app[wiring.REDIS]
    await follower(client, OPENID)
    untouched, mid_send = await _planned(client, "d:1"), await _planned(client, "d:2")
    survivor = _worker(client, reclaim_idle_seconds=1)
    await survivor.ensure_group()
    await client.app[wiring.OUTBOX].enqueue([untouched, mid_send])
    # A worker reads both entries, claims one (it was calling WeChat), then dies.
    read = await redis.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=10)
    assert len(read[0][1]) == 2
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Delivery).where(Delivery.id == mid_send).values(status="sending")
        )
    await asyncio.sleep(1.1)
    await survivor.housekeeping()
    await survivor.drain()
    rows = {r.id: r for r in await deliveries(client)}
    assert (rows[untouched].status, rows[untouched].channel) == ("sent", "template")
    assert (rows[mid_send].status, rows[mid_send].reason) == ("skipped", "interrupted")
    assert len(standin.sent(TEMPLATE)) == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_a_dead_worker_holding_more_than_concurrency_entries_stops_nothing(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0, "templates": TIER_TEMPLATE})
    redis = client.app[wiring.REDIS]
    await follower(client, OPENID)
    ids = [await _planned(client, f"held:{n}") for n in range(11)]
    # Idle 0: the survivor takes the dead worker's entries at once, without waiting on a clock.
    survivor = _worker(client, concurrency=4, reclaim_idle_seconds=0)
    await survivor.ensure_group()
    await client.app[wiring.OUTBOX].enqueue(ids)
    # A worker reads all eleven (more than the survivor's four slots), then dies.
    read = await redis.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=100)
    assert len(read[0][1]) == 11
    # It used to wait for eleven of four slots, for ever; the bound only fails the old code.
    async with asyncio.timeout(30):
        await survivor.housekeeping()
        await survivor.drain()
    rows = await deliveries(client)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 11
    assert len(standin.sent(TEMPLATE)) == 11
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_an_entry_deleted_from_the_stream_is_acknowledged_not_reclaimed_for_ever(
    app_factory: Callable[..., Any], embedded_redis_url: str
) -> None:
    # Redis 6.2, the embedded default, hands a deleted entry back from XAUTOCLAIM as an empty
    # one and keeps it pending (7 drops it itself).
    client = await app_factory(delivery={"workers": 0})
    embedded = Redis.from_url(embedded_redis_url)
    try:
        await embedded.flushall()
        worker = _worker(client, reclaim_idle_seconds=0)
        worker.redis = embedded
        await worker.ensure_group()
        entry = await embedded.xadd(STREAM, {"id": "1"})
        await embedded.xreadgroup(GROUP, "dead-worker", {STREAM: ">"})
        await embedded.xdel(STREAM, entry)
        await worker.housekeeping(sweep=False)
        assert (await embedded.xpending(STREAM, GROUP))["pending"] == 0
    finally:
        await embedded.aclose()


async def test_many_receipts_land_in_batches_even_before_the_send_is_recorded(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0, "templates": TIER_TEMPLATE})
    await follower(client, OPENID)
    delivery_id = await _planned(client)
    answers = []
    # 200 receipts in waves of 25 at once: batches form, and a busy two-core machine (the
    # other test worker) still answers each within the reply budget (waves of 50 once failed
    # here in a full CI run; batches form the same with 25).
    for wave in range(0, 200, 25):
        answers += await asyncio.gather(
            *(
                push(
                    client,
                    PLAIN,
                    PLAIN.event(
                        OPENID,
                        "TEMPLATESENDJOBFINISH",
                        extra=f"<MsgID>{400_000_000_001 + n}</MsgID>"
                        "<Status><![CDATA[success]]></Status>",
                    ),
                )
                for n in range(wave, wave + 25)
            )
        )
    assert all(a.body == "success" for a in answers)

    async def receipts() -> int:
        async with client.app[wiring.SESSIONS]() as session:
            return len((await session.scalars(select(TemplateReceipt))).all())

    assert await eventually(lambda: _at_least(receipts, 200)) == 200
    # The send is recorded after its receipt came: the receipt still reaches the row.
    assert await _worker(client).deliver(delivery_id) == "sent"
    (row,) = await deliveries(client)
    assert row.wechat_msgid == 400_000_000_001
    assert row.final_status == "success"


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> int:
    found = await count()
    return found if found >= wanted else 0
