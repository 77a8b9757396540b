"""Campaign operations shared by the console and the JSON API: the definition a marketer
submits, the approval rule, the schedule, and the dispatcher that runs what is due.

Schedules live in the ``campaigns`` table (``next_run_at``), which is the persistent store:
a restart loses nothing, and every web process's console sweep dispatches what is due with a
conditional UPDATE, so a run happens once whichever process takes it. Crontabs are read with
APScheduler's CronTrigger, in the programme's time zone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from models.audience import Audience
from models.campaigns import (
    CAMPAIGN,
    Campaign,
    CampaignRefused,
    CampaignRun,
    claim_due,
    dedupe_key,
    due_campaigns,
    recipients,
    skip_queued,
    start_run,
)
from models.deliveries import MARKETING, PlannedPush, plan
from scheduler.crontab import crontab_trigger

log = logging.getLogger(__name__)


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["A", "B"]
    text: str = Field(min_length=1, max_length=600)
    share: int = Field(default=100, ge=1, le=100)


class CampaignSpec(BaseModel):
    """What a marketer defines: audience, one or two variants, holdout, schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    audience: Audience = Audience()
    variants: list[Variant] = Field(min_length=1, max_length=2)
    holdout_percent: int = Field(default=0, ge=0, le=50)
    schedule: Literal["now", "at", "cron"] = "now"
    run_at: AwareDatetime | None = None
    cron: str | None = Field(default=None, max_length=64)
    conversion_days: int = Field(default=7, ge=1, le=60)

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


def new_campaign(spec: CampaignSpec, created_by: str, now: datetime) -> Campaign:
    """A draft from the spec."""
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
) -> int:
    """Run every due campaign once: assign its audience, plan its pushes, enqueue them.
    Returns how many runs started."""
    started = 0
    async with sessions() as session:
        due = await due_campaigns(session, now)
    for campaign_id in due:
        async with sessions.begin() as session:
            campaign = await session.get_one(Campaign, campaign_id)
            following = next_run(campaign, zone, now)
            if not await claim_due(session, campaign_id, now, following):
                continue  # another process took it
            run = await start_run(session, campaign, zone, now)
            texts = {v["name"]: v["text"] for v in campaign.variants}
        await _plan_run(sessions, outbox, campaign_id, run.id, texts, now, batch)
        started += 1
        log.info("campaign run planned", extra={"campaign": campaign_id, "run": run.id})
    return started


async def _plan_run(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    campaign_id: int,
    run_id: int,
    texts: dict[str, str],
    now: datetime,
    batch: int,
) -> None:
    async with sessions() as reader:
        async for chunk in recipients(reader, run_id, batch):
            pushes = [
                PlannedPush(member_id, dedupe_key(run_id, member_id), {"text": texts[variant]})
                for member_id, variant in chunk
            ]
            async with sessions.begin() as session:
                # Cancelled while a large audience was being planned: plan no more of it (the
                # cancel has skipped what was queued before).
                status = await session.scalar(
                    select(Campaign.status).where(Campaign.id == campaign_id)
                )
                if status == "cancelled":
                    log.info("campaign run cut short", extra={"run": run_id})
                    return
                ids = await plan(session, CAMPAIGN, MARKETING, pushes, now)
            await outbox.enqueue(ids)
    async with sessions.begin() as session:
        run = await session.get_one(CampaignRun, run_id)
        run.planned = True
