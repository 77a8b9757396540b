"""Campaigns through the JSON API: preview, draft, approval, the run with its A/B split and
holdout against the WeChat stand-in, cancellation, schedules, and the lift figures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from bot import wiring
from bot.push.outbox import STREAM, Outbox
from models.campaigns import Campaign, CampaignMember, CampaignRun, lift
from models.deliveries import Delivery
from models.staff import AuditEntry, Staff
from scheduler.campaigns import CampaignDispatcher, dispatch_due, next_run
from tests.bot.api.test_api import call, follower, order
from tests.bot.console.test_console import NO_QUIET_HOURS, add_staff, csrf_of, login
from tests.bot.push.test_delivery import eventually
from tests.wechat_standin import WeChatStandIn

AUDIENCE = {"root": {"all": [{"field": "tier", "op": "in", "value": ["basic"]}]}}
# Callers bound to staff members: the only ones that approve through the API.
BOSS_TOKEN = "token-of-boss-the-admin-01"
MIA_TOKEN = "token-of-mia-the-marketer1"
TOOL_TOKEN = "token-of-an-unbound-tool-1"
APPROVERS = {
    "tokens": {"boss_tool": BOSS_TOKEN, "mia_tool": MIA_TOKEN, "tool": TOOL_TOKEN},
    "approvers": {"boss_tool": "boss", "mia_tool": "mia"},
}


def as_caller(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def approve(client: TestClient, actions: str, token: str = BOSS_TOKEN) -> tuple[int, Any]:
    """Approve through the API as the staff member ``token`` is bound to."""
    return await call(client, "POST", actions, {"action": "approve"}, as_caller(token))


def test_lift_against_a_hand_computed_example() -> None:
    # Holdout: 10 of 100 bought (10%); variant A: 27 of 180 (15%): +50%.
    assert lift(27 / 180, 10 / 100) == pytest.approx(0.5)
    assert lift(9 / 180, 10 / 100) == pytest.approx(-0.5)
    assert lift(0.2, 0.0) is None  # no baseline, no lift


def spec(**changes: Any) -> dict[str, Any]:
    return {
        "name": "双十一预热",
        "audience": AUDIENCE,
        "variants": [
            {"name": "A", "text": "双十一会员专享：全场满300减50！", "share": 50},
            {"name": "B", "text": "会员福利：双十一领券立减50元！", "share": 50},
        ],
        "holdout_percent": 20,
        "conversion_days": 7,
        **changes,
    }


async def _followers(client: TestClient, n: int) -> list[str]:
    openids = [f"o_camp_{i:08d}" for i in range(n)]
    for openid in openids:
        await follower(client, openid)
    return openids


async def settled(client: TestClient) -> bool:
    """No campaign push is still waiting to be sent."""
    async with client.app[wiring.SESSIONS]() as session:
        waiting = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.purpose == "campaign", Delivery.status.in_(("queued", "sending")))
        )
    return waiting == 0


async def _run(client: TestClient, at: datetime | None = None) -> int:
    app = client.app
    return await dispatch_due(
        app[wiring.SESSIONS],
        app[wiring.OUTBOX],
        app[wiring.CONFIG].programme.zone,
        at or datetime.now(UTC),
    )


async def test_a_campaign_from_draft_to_figures(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "marketing_per_day": 5}, api=APPROVERS)
    openids = await _followers(client, 40)
    status, shown = await call(client, "POST", "/audiences/preview", {"audience": AUDIENCE})
    assert (status, shown["count"], shown["with_mass_allowance"]) == (200, 40, 40)
    assert len(shown["sample"]) == 10

    status, campaign = await call(client, "POST", "/campaigns", spec())
    assert (status, campaign["status"]) == (201, "draft")
    actions = f"/campaigns/{campaign['id']}/actions"
    await add_staff(client, "boss", "admin")
    await add_staff(client, "mia", "marketer")
    status, body = await approve(client, actions)
    assert (status, body["error"]["code"]) == (409, "refused")  # not submitted yet
    assert (await call(client, "POST", actions, {"action": "submit"}))[0] == 200
    status, body = await approve(client, actions, MIA_TOKEN)
    assert status == 409
    assert "role" in body["error"]["message"]
    status, body = await approve(client, actions)
    assert (status, body["status"], body["approved_by"]) == (200, "approved", "boss")

    assert await _run(client) == 1
    assert await _run(client) == 0  # a one-off runs once
    async with client.app[wiring.SESSIONS]() as session:
        split = dict(
            (
                await session.execute(
                    select(CampaignMember.variant, func.count()).group_by(CampaignMember.variant)
                )
            ).all()
        )
        planned = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.purpose == "campaign")
        )
    assert sum(split.values()) == 40
    assert 2 <= split["holdout"] <= 16  # 20% of 40, by a hash
    assert split["A"] > 0
    assert split["B"] > 0
    assert planned == 40 - split["holdout"]  # the holdout receives nothing

    # Everyone followed within the minute: each push goes inside the member's window.
    await eventually(lambda: settled(client))
    texts = [m["text"]["content"] for m in standin.sent() if "双十一" in m["text"]["content"]]
    assert len(texts) == planned

    # Two members buy within the week: one who got variant A, one from the holdout.
    async with client.app[wiring.SESSIONS]() as session:
        rows = (
            await session.execute(select(CampaignMember.member_id, CampaignMember.variant))
        ).all()
    by_variant: dict[str, int] = {}
    for member_id, variant in rows:
        by_variant.setdefault(variant, member_id)
    ids = {i: o for i, o in zip(sorted(m for m, _ in rows), sorted(openids), strict=True)}
    for n, variant in enumerate(("A", "holdout")):
        openid = ids[by_variant[variant]]
        paid = datetime.now(UTC).isoformat()
        await call(client, "POST", "/orders", order(f"C-{n}", openid, 20_000, paid_at=paid))
    status, stats = await call(client, "GET", f"/campaigns/{campaign['id']}/stats")
    assert status == 200
    figures = {v["variant"]: v for v in stats["variants"]}
    assert figures["A"]["targeted"] == split["A"]
    assert figures["A"]["sent"] == split["A"]
    assert (figures["A"]["converted"], figures["A"]["spend_fen"]) == (1, 20_000)
    assert (figures["holdout"]["converted"], figures["holdout"]["sent"]) == (1, 0)
    expected = lift(1 / split["A"], 1 / split["holdout"])
    assert figures["A"]["lift"] == pytest.approx(expected)
    assert figures["B"]["converted"] == 0


async def test_approval_is_a_person_s_act_never_a_name_in_a_request(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(console={"campaign_approval": "another_marketer"}, api=APPROVERS)
    boss = await add_staff(client, "boss", "admin")
    await add_staff(client, "mia", "marketer")
    _, first = await call(client, "POST", "/campaigns", spec())
    actions = f"/campaigns/{first['id']}/actions"
    assert (await call(client, "POST", actions, {"action": "submit"}))[0] == 200
    # A request cannot say who approves, and a caller not bound to a person cannot approve.
    status, body = await call(client, "POST", actions, {"action": "approve", "approver": "boss"})
    assert (status, body["error"]["field"]) == (422, "approver")
    for headers in (None, as_caller(TOOL_TOKEN)):
        status, body = await call(client, "POST", actions, {"action": "approve"}, headers)
        assert (status, body["error"]["code"]) == (403, "forbidden")
    # A bound token stops approving when its person's account is disabled.
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(update(Staff).where(Staff.id == boss).values(disabled=True))
    status, body = await approve(client, actions)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    async with client.app[wiring.SESSIONS]() as session:
        assert (await session.get_one(Campaign, first["id"])).status == "pending"
        assert (await session.scalars(select(AuditEntry))).all() == []

    # A bound caller's draft is its person's: never approved by the same person.
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(update(Staff).where(Staff.id == boss).values(disabled=False))
    status, second = await call(client, "POST", "/campaigns", spec(), as_caller(MIA_TOKEN))
    assert (status, second["created_by"]) == (201, "mia")
    actions = f"/campaigns/{second['id']}/actions"
    await call(client, "POST", actions, {"action": "submit"}, as_caller(MIA_TOKEN))
    status, body = await approve(client, actions, MIA_TOKEN)
    assert (status, body["error"]["code"]) == (409, "refused")
    assert "other than its author" in body["error"]["message"]
    status, body = await approve(client, actions)
    assert (status, body["approved_by"]) == (200, "boss")
    async with client.app[wiring.SESSIONS]() as session:
        (entry,) = (await session.scalars(select(AuditEntry))).all()
    assert (entry.staff_id, entry.action) == (boss, "campaign_approve")
    assert entry.target == str(second["id"])
    assert entry.detail == {"api_caller": "boss_tool"}


async def test_cancel_skips_what_is_still_queued(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(delivery={"workers": 0}, api=APPROVERS)
    await _followers(client, 5)
    await add_staff(client, "boss", "admin")
    _, campaign = await call(client, "POST", "/campaigns", spec(holdout_percent=0))
    actions = f"/campaigns/{campaign['id']}/actions"
    await call(client, "POST", actions, {"action": "submit"})
    await approve(client, actions)
    assert await _run(client) == 1
    status, body = await call(client, "POST", actions, {"action": "cancel"})
    assert (status, body["status"]) == (200, "cancelled")
    async with client.app[wiring.SESSIONS]() as session:
        outcomes = (await session.execute(select(Delivery.status, Delivery.reason))).all()
    assert outcomes
    assert all(o == ("skipped", "cancelled") for o in outcomes)
    # A row retried before the cancel keeps its errcode: it is still one of the 5 cancelled.
    async with client.app[wiring.SESSIONS].begin() as session:
        first = await session.scalar(select(func.min(Delivery.id)))
        await session.execute(update(Delivery).where(Delivery.id == first).values(errcode=45009))
    _, stats = await call(client, "GET", f"/campaigns/{campaign['id']}/stats")
    skipped = sum(v["skipped"].get("cancelled", 0) for v in stats["variants"])
    assert skipped == 5


async def test_a_cancel_while_a_run_is_planned_plans_no_more_of_it(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0}, api=APPROVERS)
    await _followers(client, 5)
    await add_staff(client, "boss", "admin")
    _, campaign = await call(client, "POST", "/campaigns", spec(holdout_percent=0))
    actions = f"/campaigns/{campaign['id']}/actions"
    await call(client, "POST", actions, {"action": "submit"})
    await approve(client, actions)
    app = client.app

    class CancelAfterFirstBatch(Outbox):
        """The marketer cancels once the first batch of two is queued."""

        async def enqueue(self, ids: Any, at: datetime | None = None) -> None:
            await super().enqueue(ids, at)
            status, _ = await call(client, "POST", actions, {"action": "cancel"})
            assert status in (200, 409)  # 409: cancelled already

    outbox = CancelAfterFirstBatch(app[wiring.REDIS])
    zone = app[wiring.CONFIG].programme.zone
    await dispatch_due(app[wiring.SESSIONS], outbox, zone, datetime.now(UTC), batch=2)
    async with app[wiring.SESSIONS]() as session:
        planned = (await session.execute(select(Delivery.status, Delivery.reason))).all()
    # Of 5, only the first batch was planned, and the cancel skipped it.
    assert planned == [("skipped", "cancelled")] * 2


async def approved_campaign(client: TestClient, **changes: Any) -> int:
    """A campaign submitted and approved (due now unless ``changes`` say otherwise)."""
    await add_staff(client, "boss", "admin")
    _, campaign = await call(client, "POST", "/campaigns", spec(**changes))
    actions = f"/campaigns/{campaign['id']}/actions"
    await call(client, "POST", actions, {"action": "submit"})
    status, _ = await approve(client, actions)
    assert status == 200
    return int(campaign["id"])


async def _planned_per_member(client: TestClient) -> dict[int, int]:
    async with client.app[wiring.SESSIONS]() as session:
        rows = await session.execute(
            select(Delivery.member_id, func.count())
            .where(Delivery.purpose == "campaign")
            .group_by(Delivery.member_id)
        )
        return dict(rows.all())


async def _state(client: TestClient, campaign_id: int) -> tuple[str, bool]:
    """The campaign's status, and whether its run is wholly planned."""
    async with client.app[wiring.SESSIONS]() as session:
        status = await session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        (planned,) = (
            await session.scalars(
                select(CampaignRun.planned).where(CampaignRun.campaign_id == campaign_id)
            )
        ).all()
    assert status is not None
    return status, planned


class _Crash(Exception):
    """The planning process dies."""


class _CrashOnSecondBatch(Outbox):
    """Dies once the second batch is committed, before it is enqueued."""

    batches = 0

    async def enqueue(self, ids: Any, at: datetime | None = None) -> None:
        self.batches += 1
        if self.batches == 2:
            raise _Crash
        await super().enqueue(ids, at)


async def test_planning_cut_short_resumes_where_it_stopped_and_then_the_campaign_is_done(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0}, api=APPROVERS)
    await _followers(client, 7)
    campaign_id = await approved_campaign(client, holdout_percent=0)
    app = client.app
    sessions, redis, zone = (
        app[wiring.SESSIONS],
        app[wiring.REDIS],
        app[wiring.CONFIG].programme.zone,
    )
    with pytest.raises(_Crash):
        await dispatch_due(sessions, _CrashOnSecondBatch(redis), zone, datetime.now(UTC), batch=2)
    # Two batches of two committed; the one-off is not done while its audience is half planned.
    assert sorted((await _planned_per_member(client)).values()) == [1] * 4
    assert await _state(client, campaign_id) == ("approved", False)
    # The restarted planner starts no new run: it resumes this one after its checkpoint.
    assert await _run(client) == 0
    planned = await _planned_per_member(client)
    assert len(planned) == 7
    assert set(planned.values()) == {1}
    assert await _state(client, campaign_id) == ("done", True)
    assert await _run(client) == 0
    assert len(await _planned_per_member(client)) == 7
    # On the stream: the first batch and what the restart planned; the batch planned but not
    # enqueued is left to the delivery workers' sweep of queued rows.
    assert await redis.xlen(STREAM) == 2 + 3


async def test_two_planners_resuming_one_run_at_once_plan_each_member_once(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0}, api=APPROVERS)
    await _followers(client, 9)
    campaign_id = await approved_campaign(client, holdout_percent=0)
    app = client.app
    sessions, redis, zone = (
        app[wiring.SESSIONS],
        app[wiring.REDIS],
        app[wiring.CONFIG].programme.zone,
    )
    with pytest.raises(_Crash):
        await dispatch_due(sessions, _CrashOnSecondBatch(redis), zone, datetime.now(UTC), batch=2)
    # Two processes resume it at once (say, a leader change during the restart): each on its
    # own sessions and connections.
    outbox = app[wiring.OUTBOX]
    now = datetime.now(UTC)
    await asyncio.gather(*(dispatch_due(sessions, outbox, zone, now, batch=2) for _ in range(2)))
    planned = await _planned_per_member(client)
    assert len(planned) == 9
    assert set(planned.values()) == {1}
    assert await _state(client, campaign_id) == ("done", True)
    entries = await redis.xrange(STREAM)
    ids = [fields[b"id"] for _, fields in entries]
    assert len(ids) == len(set(ids)) == 9 - 2  # none twice; the crashed batch awaits the sweep


async def test_a_paused_campaign_stops_being_planned_and_resumes_after_the_resume(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={"workers": 0}, api=APPROVERS)
    await _followers(client, 5)
    campaign_id = await approved_campaign(client, holdout_percent=0)
    actions = f"/campaigns/{campaign_id}/actions"
    app = client.app

    class PauseAfterFirstBatch(Outbox):
        async def enqueue(self, ids: Any, at: datetime | None = None) -> None:
            await super().enqueue(ids, at)
            await call(client, "POST", actions, {"action": "pause"})

    zone = app[wiring.CONFIG].programme.zone
    outbox = PauseAfterFirstBatch(app[wiring.REDIS])
    await dispatch_due(app[wiring.SESSIONS], outbox, zone, datetime.now(UTC), batch=2)
    assert len(await _planned_per_member(client)) == 2
    assert await _state(client, campaign_id) == ("paused", False)
    assert await _run(client) == 0  # paused: nothing more
    assert len(await _planned_per_member(client)) == 2
    status, _ = await call(client, "POST", actions, {"action": "resume"})
    assert status == 200
    assert await _run(client) == 0
    assert set((await _planned_per_member(client)).values()) == {1}
    assert len(await _planned_per_member(client)) == 5
    assert await _state(client, campaign_id) == ("done", True)


async def test_the_dispatcher_starts_runs_only_while_leading(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(api=APPROVERS)
    await _followers(client, 3)
    campaign_id = await approved_campaign(client, holdout_percent=0)
    app = client.app
    leading = False
    dispatcher = CampaignDispatcher(
        app[wiring.SESSIONS], app[wiring.OUTBOX], app[wiring.CONFIG].programme.zone, lambda: leading
    )
    assert await dispatcher.tick() == 0
    assert await _planned_per_member(client) == {}
    leading = True
    assert await dispatcher.tick() == 1
    assert len(await _planned_per_member(client)) == 3
    assert await _state(client, campaign_id) == ("done", True)


async def test_schedules_pause_and_resume(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(api=APPROVERS)
    await _followers(client, 3)
    await add_staff(client, "boss", "admin")
    later = datetime.now(UTC) + timedelta(hours=2)
    _, campaign = await call(
        client, "POST", "/campaigns", spec(schedule="at", run_at=later.isoformat())
    )
    actions = f"/campaigns/{campaign['id']}/actions"
    await call(client, "POST", actions, {"action": "submit"})
    _, body = await approve(client, actions)
    assert datetime.fromisoformat(body["next_run_at"]) == later
    assert await _run(client) == 0  # not yet
    await call(client, "POST", actions, {"action": "pause"})
    assert await _run(client, later + timedelta(minutes=1)) == 0  # paused
    _, body = await call(client, "POST", actions, {"action": "resume"})
    assert body["status"] == "approved"
    assert await _run(client, later + timedelta(minutes=1)) == 1
    async with client.app[wiring.SESSIONS]() as session:
        assert (await session.get_one(Campaign, campaign["id"])).status == "done"


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 10 * * 1", datetime(2026, 11, 30, 10, 0)),  # Mondays (crontab's 1, not APScheduler's)
        ("0 10 * * 0", datetime(2026, 11, 29, 10, 0)),  # Sundays
        ("0 10 * * 7", datetime(2026, 11, 29, 10, 0)),  # Sundays too
        ("0 10 * * 1-5", datetime(2026, 11, 24, 10, 0)),  # weekdays
        ("30 9 1 * *", datetime(2026, 12, 1, 9, 30)),  # the 1st of each month
    ],
)
def test_the_next_run_of_a_recurring_campaign(cron: str, expected: datetime) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    campaign = Campaign(schedule="cron", cron=cron)
    after = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # Monday 11:00 in Shanghai
    assert next_run(campaign, zone, after) == expected.replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"variants": [{"name": "A", "text": "x", "share": 60}]}, "variants"),
        ({"schedule": "at"}, None),
        ({"schedule": "cron", "cron": "every monday"}, "cron"),
        ({"holdout_percent": 80}, "holdout_percent"),
        ({"audience": {"root": {"all": [{"field": "tier", "op": "gte", "value": 1}]}}}, "audience"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_campaigns_are_refused(
    client: TestClient, changes: dict[str, Any], field: str | None
) -> None:
    status, body = await call(client, "POST", "/campaigns", spec(**changes))
    assert status == 422
    if field:
        assert (body["error"]["field"] or "").startswith(field)
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 0


async def test_a_test_send_goes_to_chosen_openids_first(
    client: TestClient, standin: WeChatStandIn
) -> None:
    _, campaign = await call(client, "POST", "/campaigns", spec())
    await add_staff(client, "mia", "marketer")
    assert await login(client, "mia") == 303
    token = await csrf_of(client, "/console/campaigns")
    response = await client.post(
        f"/console/campaigns/{campaign['id']}/test",
        data={"csrf": token, "openids": "o_staff_phone_01, o_staff_phone_02"},
        allow_redirects=False,
    )
    assert response.status == 303
    previews = standin.sent("/cgi-bin/message/mass/preview")
    assert [(p["touser"], p["text"]["content"][:4]) for p in previews] == [
        ("o_staff_phone_01", "双十一会"),
        ("o_staff_phone_01", "会员福利"),
        ("o_staff_phone_02", "双十一会"),
        ("o_staff_phone_02", "会员福利"),
    ]
    # Nothing was planned for members: a test send is not a run.
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 0
