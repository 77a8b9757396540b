"""A campaign's reward is issued by the delivery worker when WeChat accepts the push: not when
it is planned, never for a push that failed, was skipped or is still to be retried, once
however often a row is handed over, and for a mass send as for a window message (also when
WeChat's 45065 says a late-answered mass send went out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from models.base import utcnow
from models.campaign_rewards import CampaignReward
from models.campaigns import CampaignMember
from models.coupons import Coupon
from models.deliveries import Delivery
from models.members import Member
from scheduler.campaigns import CampaignSpec, new_campaign
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import NO_QUIET_HOURS
from tests.bot.push.test_delivery import _worker
from tests.bot.push.test_marketing import MASS, _quiet_follower
from tests.scheduler.test_campaigns import _run
from tests.wechat_standin import Fault, WeChatStandIn

CUSTOM = "/cgi-bin/message/custom/send"


async def approved_campaign(
    client: TestClient, reward: dict[str, Any], holdout_percent: int = 0
) -> int:
    """A campaign to every follower with ``reward``, approved and due now."""
    spec = CampaignSpec.model_validate(
        {
            "name": "彩妆回购",
            "variants": [{"name": "A", "text": "彩妆会员日，全场满300减50", "share": 100}],
            "holdout_percent": holdout_percent,
            "reward": reward,
        }
    )
    now = utcnow()
    async with client.app[wiring.SESSIONS].begin() as session:
        campaign = new_campaign(spec, "mia", now, client.app[wiring.CONFIG].programme)
        campaign.status, campaign.approved_by, campaign.next_run_at = "approved", "boss", now
        session.add(campaign)
        await session.flush()
        return campaign.id


async def rows(client: TestClient) -> dict[str, Delivery]:
    """The campaign's deliveries by the member's openid."""
    async with client.app[wiring.SESSIONS]() as session:
        found = await session.execute(
            select(Member.openid, Delivery)
            .join(Member, Member.id == Delivery.member_id)
            .where(Delivery.purpose == "campaign")
        )
        return {openid: delivery for openid, delivery in found}


async def coupons_of(client: TestClient) -> dict[str, str]:
    """Each member's coupon kinds, by openid."""
    async with client.app[wiring.SESSIONS]() as session:
        found = await session.execute(
            select(Member.openid, Coupon.kind).join(Member, Member.id == Coupon.member_id)
        )
        return dict(found.all())


async def test_the_reward_follows_the_send_not_the_plan(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "workers": 0, "marketing_per_day": 5})
    openids = [f"o_rwd_{n:06d}" for n in range(3)]
    for openid in openids:
        await follower(client, openid)
    await approved_campaign(client, {"coupon": "full_300_50"})
    assert await _run(client) == 1
    planned = await rows(client)
    assert await coupons_of(client) == {}  # planned is not sent
    sent, failed, retried = (planned[o].id for o in openids)
    worker = _worker(client)

    assert await worker.deliver(sent) == "sent"
    standin.fail_next(CUSTOM, Fault(errcode=40003))  # permanent: recorded failed
    assert await worker.deliver(failed) == "failed"
    # Transient (the client's own quick retries meet it too): back in the queue.
    standin.fail_next(CUSTOM, *[Fault(errcode=45009)] * 5)
    assert await worker.deliver(retried) == "retrying"
    standin.faults[CUSTOM].clear()
    assert await coupons_of(client) == {openids[0]: "full_300_50"}

    # The same row again (a duplicate stream entry, a second worker): not claimed, no reward.
    assert await worker.deliver(sent) == "not_claimed"
    # The retried push, once it goes: rewarded then, once.
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            Delivery.__table__.update().where(Delivery.id == retried).values(not_before=utcnow())
        )
    assert await worker.deliver(retried) == "sent"
    assert await coupons_of(client) == {openids[0]: "full_300_50", openids[2]: "full_300_50"}
    text = standin.sent()[0]["text"]["content"]
    assert text.startswith("彩妆会员日")
    assert "满300减50已放入您的券包（30天内有效）" in text


async def test_the_holdout_gets_nothing_and_the_treatment_its_points(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "workers": 0, "marketing_per_day": 5})
    openids = [f"o_rwd_h{n:05d}" for n in range(40)]
    for openid in openids:
        await follower(client, openid)
    await approved_campaign(client, {"points": 300}, holdout_percent=30)
    assert await _run(client) == 1
    planned = await rows(client)
    worker = _worker(client)
    assert await worker.deliver_many([d.id for d in planned.values()]) == {
        d.id: "sent" for d in planned.values()
    }
    async with client.app[wiring.SESSIONS]() as session:
        holdout = set(
            (
                await session.scalars(
                    select(CampaignMember.member_id).where(CampaignMember.variant == "holdout")
                )
            ).all()
        )
        rewarded = set((await session.scalars(select(CampaignReward.member_id))).all())
        balances = dict((await session.execute(select(Member.id, Member.points_balance))).all())
    assert holdout  # 30% of 40, by a hash
    assert rewarded == {d.member_id for d in planned.values()}
    assert not rewarded & holdout
    assert {balances[m] for m in holdout} == {0}
    assert {balances[m] for m in rewarded} == {300}
    assert "300积分已存入您的账户" in standin.sent()[0]["text"]["content"]


async def test_a_capped_push_is_skipped_and_rewards_nothing(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(delivery={**NO_QUIET_HOURS, "workers": 0, "marketing_per_day": 1})
    await follower(client, "o_rwd_cap001")
    await approved_campaign(client, {"coupon": "cash_10"})
    assert await _run(client) == 1
    (row,) = (await rows(client)).values()
    worker = _worker(client)
    await worker.limits.take_marketing(row.member_id, utcnow())  # today's one is spent
    assert await worker.deliver(row.id) == "skipped"
    assert await coupons_of(client) == {}


async def test_a_mass_send_rewards_its_members_also_when_wechat_says_45065(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(
        delivery={**NO_QUIET_HOURS, "workers": 0, "marketing_per_day": 5},
        api_timeout_seconds=0.3,
    )
    openids = ["o_rwd_mass01", "o_rwd_mass02"]
    for openid in openids:
        await _quiet_follower(client, openid)
    await approved_campaign(client, {"coupon": "cash_10"})
    assert await _run(client) == 1
    worker = _worker(client)
    assert [await worker.deliver(d.id) for d in (await rows(client)).values()] == ["batched"] * 2
    assert await coupons_of(client) == {}  # batched is not sent
    standin.fail_next(MASS, Fault(delay=1.0))  # answered late; the retry gets 45065
    await worker.housekeeping()
    assert len(standin.sent(MASS)) == 1
    assert {d.reason for d in (await rows(client)).values()} == {"clientmsgid_exists"}
    assert await coupons_of(client) == dict.fromkeys(openids, "cash_10")
