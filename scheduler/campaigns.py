"""Campaign operations shared by the console and the JSON API: the definition a marketer
submits, the approval rule, the schedule, and the dispatcher that runs what is due.

Schedules live in the ``campaigns`` table (``next_run_at``), which is the persistent store:
a restart loses nothing. The scheduler's leader dispatches what is due every few seconds
(``CampaignDispatcher``; the scheduler role, not web processes): a run is claimed with a
conditional UPDATE, so it happens once whichever process takes it, and its audience is planned
in checkpointed batches, so a planner that stops (a crash, a lost leadership, a database
error) is resumed where it stopped by the next pass, wherever it runs. Crontabs are read with
APScheduler's CronTrigger, in the programme's time zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages.campaign_copy import with_reward
from models.audience import Audience
from models.base import utcnow
from models.campaign_rewards import Reward, reward_payload, reward_terms
from models.campaigns import (
    CAMPAIGN,
    Campaign,
    CampaignRefused,
    CampaignRun,
    advance_checkpoint,
    claim_due,
    dedupe_key,
    due_campaigns,
    finish_run,
    recipients_after,
    skip_queued,
    start_run,
    still_approved,
    unfinished_runs,
)
from models.deliveries import MARKETING, PlannedPush, plan
from models.rules import ProgrammeRules
from scheduler.crontab import crontab_trigger

log = logging.getLogger(__name__)

# How often the leader looks for due campaigns (a "now" campaign starts within this).
DISPATCH_SECONDS = 5.0


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["A", "B"]
    text: str = Field(min_length=1, max_length=600)
    share: int = Field(default=100, ge=1, le=100)


class CampaignSpec(BaseModel):
    """What a marketer defines: audience, one or two variants, holdout, schedule, and what
    each recipient in the treatment group gets when the push is sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    audience: Audience = Audience()
    variants: list[Variant] = Field(min_length=1, max_length=2)
    holdout_percent: int = Field(default=0, ge=0, le=50)
    schedule: Literal["now", "at", "cron"] = "now"
    run_at: AwareDatetime | None = None
    cron: str | None = Field(default=None, max_length=64)
    conversion_days: int = Field(default=7, ge=1, le=60)
    reward: Reward | None = Field(
        default=None,
        description="a coupon kind or points for each treatment recipient, issued on sending "
        "(once per member and campaign; the holdout gets nothing)",
    )

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                crontab_trigger(value, ZoneInfo("UTC"))
            except ValueError as exc:
                raise ValueError(f"not a crontab: {exc}") from None
        return value

    @field_validator("variants")
    @classmethod
    def _split(cls, variants: list[Variant]) -> list[Variant]:
        if [v.name for v in variants] not in (["A"], ["A", "B"]):
            raise ValueError("variants are A, or A and B")
        if sum(v.share for v in variants) != 100:
            raise ValueError("variant shares must add up to 100")
        return variants

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        if self.schedule == "at" and self.run_at is None:
            raise ValueError("a scheduled campaign needs run_at")
        if self.schedule == "cron" and not self.cron:
            raise ValueError("a recurring campaign needs cron")
        return self


def new_campaign(
    spec: CampaignSpec, created_by: str, now: datetime, rules: ProgrammeRules
) -> Campaign:
    """A draft from the spec; UnknownCouponKind (nothing built) when its reward names a coupon
    kind the programme does not have."""
    return Campaign(
        name=spec.name,
        status="draft",
        audience=spec.audience.model_dump(mode="json"),
        variants=[v.model_dump() for v in spec.variants],
        holdout_percent=spec.holdout_percent,
        schedule=spec.schedule,
        run_at=spec.run_at,
        cron=spec.cron,
        conversion_days=spec.conversion_days,
        reward=reward_terms(spec.reward, rules),
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )


def next_run(campaign: Campaign, zone: ZoneInfo, after: datetime) -> datetime | None:
    """When the campaign runs next after ``after`` (None: never again)."""
    if campaign.schedule == "cron" and campaign.cron:
        return crontab_trigger(campaign.cron, zone).get_next_fire_time(None, after)
    return None


def first_run(campaign: Campaign, zone: ZoneInfo, now: datetime) -> datetime:
    """When an approved campaign first runs."""
    if campaign.schedule == "at" and campaign.run_at is not None:
        return max(campaign.run_at, now)
    if campaign.schedule == "cron":
        return next_run(campaign, zone, now) or now
    return now


# Each action and the states it applies to.
ACTIONS = {
    "submit": ("draft",),
    "approve": ("pending",),
    "pause": ("approved",),
    "resume": ("paused",),
    # A run's pushes may still be queued (quiet hours, batching): cancelling stops them.
    "cancel": ("draft", "pending", "approved", "paused", "done"),
}


def may_approve(campaign: Campaign, who: str, role: str, approval: str) -> bool:
    """Someone other than the author: an admin, or another marketer where allowed."""
    return who != campaign.created_by and (
        role == "admin" or (approval == "another_marketer" and role == "marketer")
    )


def actions_for(campaign: Campaign, who: str, role: str, approval: str) -> list[str]:
    """What ``who`` may do with the campaign now."""
    return [
        action
        for action, states in ACTIONS.items()
        if campaign.status in states
        and (action != "approve" or may_approve(campaign, who, role, approval))
    ]


async def transition(
    session: AsyncSession,
    campaign_id: int,
    action: str,
    who: str,
    role: str,
    approval: str,
    zone: ZoneInfo,
    now: datetime,
) -> Campaign:
    """Submit, approve, pause, resume or cancel; CampaignRefused says why not."""
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise LookupError("no such campaign")
    if campaign.status not in ACTIONS[action]:
        raise CampaignRefused(f"cannot {action} a campaign that is {campaign.status}")
    if action == "approve":
        if who == campaign.created_by:
            raise CampaignRefused("a campaign is approved by someone other than its author")
        if not may_approve(campaign, who, role, approval):
            raise CampaignRefused("your role cannot approve campaigns")
        campaign.approved_by = who
        campaign.status = "approved"
        campaign.next_run_at = first_run(campaign, zone, now)
    elif action == "submit":
        campaign.status = "pending"
    elif action == "pause":
        campaign.status = "paused"
    elif action == "resume":
        campaign.status = "approved"
        if campaign.next_run_at is not None and campaign.next_run_at < now:
            # A missed one-off runs now; a recurring one waits for its next slot.
            campaign.next_run_at = (
                now if campaign.schedule != "cron" else next_run(campaign, zone, now)
            )
    else:
        campaign.status = "cancelled"
        campaign.next_run_at = None
        await skip_queued(session, campaign.id, now)
    campaign.updated_at = now
    await session.flush()
    return campaign


async def dispatch_due(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    zone: ZoneInfo,
    now: datetime,
    batch: int = 5000,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Start every due campaign's run (assigning its audience), then plan every run not yet
    wholly planned — these, and any a stopped planner left — and enqueue the pushes. Stops
    between batches once ``keep_going`` says so. Returns how many runs started."""
    started = 0
    async with sessions() as session:
        due = await due_campaigns(session, now)
    for campaign_id in due:
        if not keep_going():
            return started
        async with sessions.begin() as session:
            campaign = await session.get_one(Campaign, campaign_id)
            following = next_run(campaign, zone, now)
            if not await claim_due(session, campaign_id, now, following):
                continue  # another process took it
            run = await start_run(session, campaign, zone, now)
        started += 1
        log.info("campaign run started", extra={"campaign": campaign_id, "run": run.id})
    async with sessions() as session:
        unfinished = await unfinished_runs(session)
    for run_id, campaign_id in unfinished:
        if await plan_run(sessions, outbox, run_id, campaign_id, now, batch, keep_going):
            log.info("campaign run planned", extra={"campaign": campaign_id, "run": run_id})
    return started


async def plan_run(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    run_id: int,
    campaign_id: int,
    now: datetime,
    batch: int = 5000,
    keep_going: Callable[[], bool] = lambda: True,
) -> bool:
    """Plan a run's pushes from its checkpoint on, a batch per transaction (the batch's rows
    and the moved checkpoint commit together), enqueueing each batch once committed. True
    when the whole audience is planned; False when it stopped first (``keep_going``, or the
    campaign paused or cancelled). A batch committed but not enqueued (a crash in between) is
    put on the stream by the delivery workers' sweep."""
    async with sessions() as session:
        campaign = await session.get_one(Campaign, campaign_id)
        terms = campaign.reward
        texts = {v["name"]: with_reward(v["text"], terms) for v in campaign.variants}
    # Only the treatment is planned (the holdout gets no push), so only it is rewarded.
    extra = {"reward": reward_payload(terms, campaign_id, run_id)} if terms else {}
    while keep_going():
        async with sessions() as session:
            through = await session.scalar(
                select(CampaignRun.planned_through).where(CampaignRun.id == run_id)
            )
            chunk = await recipients_after(session, run_id, through or 0, batch)
        async with sessions() as session:
            if not chunk:
                if not await finish_run(session, run_id, campaign_id, now):
                    await session.rollback()
                    return False
                await session.commit()
                return True
            if not await advance_checkpoint(session, run_id, through or 0, chunk[-1][0]):
                await session.rollback()
                continue  # another planner took this batch: read the checkpoint again
            if not await still_approved(session, campaign_id):
                # Paused or cancelled while a large audience was being planned: plan no more
                # of it (a cancel has skipped what was queued before; a resume goes on).
                await session.rollback()
                log.info("campaign run stopped", extra={"run": run_id})
                return False
            pushes = [
                PlannedPush(
                    member_id, dedupe_key(run_id, member_id), {"text": texts[variant], **extra}
                )
                for member_id, variant in chunk
            ]
            ids = await plan(session, CAMPAIGN, MARKETING, pushes, now)
            await session.commit()
        await outbox.enqueue(ids)
    return False


class CampaignDispatcher:
    """Runs ``dispatch_due`` every few seconds while this process leads the scheduler.

    Planning a run is the scheduler's work, not a web process's: one planner at a time (the
    leader) rather than every web process's sweep reading the same audience, and a web
    process's requests never wait behind a million-member INSERT. A planner that loses the
    lead stops between batches; the next leader resumes the run from its checkpoint.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        zone: ZoneInfo,
        is_leader: Callable[[], bool],
        interval: float = DISPATCH_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._zone = zone
        self._is_leader = is_leader
        self._interval = interval

    async def tick(self, keep_going: Callable[[], bool] = lambda: True) -> int:
        """One pass if this process leads (runs started); nothing otherwise."""
        if not self._is_leader():
            return 0
        return await dispatch_due(
            self._sessions,
            self._outbox,
            self._zone,
            utcnow(),
            keep_going=lambda: self._is_leader() and keep_going(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set. Stopped between batches, never cancelled: cancelling a
        task mid-statement can leave its database connection hanging when the pool closes."""
        while not stop.is_set():
            try:
                await self.tick(keep_going=lambda: not stop.is_set())
            except Exception:
                # The next pass resumes whatever this one left half planned.
                log.exception("campaign dispatch failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
