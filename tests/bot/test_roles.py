"""Process roles (``serve --role``): a web process and a worker process share the pipeline
through Redis and the database; the worker and scheduler roles run as real processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bot import wiring
from bot.app import create_app
from bot.console.sweeps import ConsoleSweeps
from bot.wechat.handoff import Handoffs
from models.campaigns import Campaign, CampaignRun
from models.deliveries import Delivery
from models.events import MemberEvent
from scheduler.settings import SchedulerConfig
from tests.bot.api.test_api import follower
from tests.bot.push.test_delivery import OPENID, eventually, finished, upgrade
from tests.helpers import ROOT, bot_config, run_bot
from tests.scheduler.test_campaigns import APPROVERS, approved_campaign
from tests.services import STARTUP_SECONDS, child_process, free_port
from tests.wechat_standin import WeChatStandIn


async def test_a_web_process_plans_and_a_worker_process_sends(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    web = await app_factory(roles=("web",))
    await follower(web, OPENID)
    await upgrade(web)
    # The web process runs no notifier or consumer: the upgrade's event waits for a worker.
    await asyncio.sleep(1.5)
    async with web.app[wiring.SESSIONS]() as session:
        query = select(MemberEvent).where(MemberEvent.kind == "tier_upgraded")
        (event,) = (await session.scalars(query)).all()
    assert event.processed_at is None
    assert standin.sent() == []

    worker = await app_factory(roles=("worker",))
    (row,) = await eventually(lambda: finished(web))
    assert (row.purpose, row.status) == ("tier_upgraded", "sent")
    assert [m["touser"] for m in standin.sent()] == [OPENID]
    # A worker serves health checks, not WeChat.
    assert (await worker.get("/healthz")).status == 200
    assert (await worker.post("/wechat", data=b"<xml/>")).status == 404
    assert (await web.get("/healthz")).status == 200


async def test_campaigns_are_started_by_the_scheduler_leader_not_by_web_processes(
    app_factory: Callable[..., Any], aiohttp_client: Callable[..., Any]
) -> None:
    web = await app_factory(roles=("web",), api=APPROVERS)
    for n in range(3):
        await follower(web, f"o_role_camp_{n:04d}")
    campaign_id = await approved_campaign(web, holdout_percent=0)
    # A web process's console sweep assigns conversations; it no longer plans campaigns.
    sweeps = ConsoleSweeps(
        web.app[wiring.SESSIONS], Handoffs(web.app[wiring.REDIS]), web.app[wiring.CONFIG].console
    )
    await sweeps.sweep()
    async with web.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(CampaignRun)) == 0
    # A scheduler process gains the lead and plans the run.
    config = web.app[wiring.CONFIG].model_copy(update={"scheduler": SchedulerConfig(jobs={})})
    await aiohttp_client(create_app(config, roles=("scheduler",)))

    async def done() -> bool:
        async with web.app[wiring.SESSIONS]() as session:
            campaign = await session.get_one(Campaign, campaign_id)
            return campaign.status == "done"

    await eventually(done)
    async with web.app[wiring.SESSIONS]() as session:
        planned = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.purpose == "campaign")
        )
    assert planned == 3


async def _health(port: int) -> int:
    """The status of the process's /healthz once it is healthy, or the last one it gave by
    the start-up ceiling (a loaded machine may answer 503 while Redis is still being reached)."""
    status = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    async with aiohttp.ClientSession() as http:
        while status != 200 and loop.time() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    status = response.status
            except aiohttp.ClientConnectionError:
                pass
            if status != 200:
                await asyncio.sleep(0.1)
    return status


async def test_worker_and_scheduler_processes_run_and_stop_on_sigterm(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    for role in ("worker", "scheduler"):
        port = free_port()
        async with child_process(
            *(sys.executable, "-m", "bot", "--config", str(config)),
            *("serve", "--role", role, "--port", str(port)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        ) as process:
            assert await _health(port) == 200
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), timeout=STARTUP_SECONDS)
        assert process.returncode == 0, err.decode()
        assert f"running as {role}; health on http://127.0.0.1:{port}/healthz" in out.decode()


async def test_a_scheduler_role_with_the_scheduler_disabled_is_refused(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    config.write_text(config.read_text() + "[scheduler]\nenabled = false\n", encoding="utf-8")
    code, _, err = await run_bot(config, "serve", "--role", "scheduler")
    assert code == 2
    assert "--role scheduler with [scheduler] enabled = false" in err
