"""Campaigns through the JSON API, for teams that drive them from their own tools: preview an
audience, draft, submit, approve (naming the approving staff member), pause, resume, cancel,
and read the figures. The same rules as in the console (scheduler/campaigns.py)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot import wiring
from bot.api import schemas as s
from bot.api.routes import ApiError, _json, api, id_param, parse_body
from models.audience import Audience, preview
from models.base import utcnow
from models.campaigns import Campaign, CampaignRefused, campaign_stats, lifts
from models.staff import find_staff
from scheduler.campaigns import CampaignSpec, new_campaign, transition

API_AUTHOR = "api"


class AudiencePreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    audience: Audience


class AudiencePreviewOut(BaseModel):
    count: int
    with_mass_allowance: int = Field(description="members with mass sends left this month")
    sample: list[dict[str, str | int | None]]


class CampaignOut(BaseModel):
    id: int
    name: str
    status: str
    schedule: str
    next_run_at: datetime | None
    created_by: str
    approved_by: str | None


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["submit", "approve", "pause", "resume", "cancel"]
    # Who approves (a staff username): never the author; an admin unless the console allows
    # another marketer.
    approver: str | None = Field(default=None, max_length=32)


class VariantStatsOut(BaseModel):
    variant: str
    targeted: int
    sent: int
    failed: dict[str, int]
    skipped: dict[str, int]
    converted: int
    orders: int
    spend_fen: int
    conversion_rate: float
    lift: float | None = Field(description="relative to the holdout; null without one")


class CampaignStatsOut(BaseModel):
    campaign: CampaignOut
    variants: list[VariantStatsOut]


def _out(campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        schedule=campaign.schedule,
        next_run_at=campaign.next_run_at,
        created_by=campaign.created_by,
        approved_by=campaign.approved_by,
    )


@api.route(
    "POST",
    "/audiences/preview",
    "Count an audience, with how many have mass sends left this month, and a sample",
    body=AudiencePreviewIn,
    responses={200: AudiencePreviewOut},
)
async def post_audience_preview(request: web.Request) -> web.Response:
    data = await parse_body(request, AudiencePreviewIn)
    config = request.config_dict[wiring.CONFIG]
    zone = config.programme.zone
    month_start = datetime.combine(utcnow().astimezone(zone).date().replace(day=1), time.min, zone)
    async with request.config_dict[wiring.SESSIONS]() as session:
        shown = await preview(
            session, data.audience, zone, month_start, config.delivery.mass_per_month
        )
    return _json(
        AudiencePreviewOut(
            count=shown.count, with_mass_allowance=shown.with_mass_allowance, sample=shown.sample
        )
    )


@api.route(
    "POST",
    "/campaigns",
    "Draft a campaign",
    body=CampaignSpec,
    responses={201: CampaignOut},
)
async def post_campaign(request: web.Request) -> web.Response:
    spec = await parse_body(request, CampaignSpec)
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        campaign = new_campaign(spec, API_AUTHOR, utcnow())
        session.add(campaign)
        await session.flush()
        return _json(_out(campaign), 201)


@api.route(
    "POST",
    "/campaigns/{campaign_id}/actions",
    "Submit, approve, pause, resume or cancel a campaign",
    body=ActionIn,
    responses={200: CampaignOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_campaign_action(request: web.Request) -> web.Response:
    campaign_id = id_param(request, "campaign_id", "unknown_campaign", "campaign")
    data = await parse_body(request, ActionIn)
    config = request.config_dict[wiring.CONFIG]
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        who, role = API_AUTHOR, "api"
        if data.action == "approve":
            approver = await find_staff(session, data.approver or "")
            if approver is None or approver.disabled:
                raise ApiError(422, "invalid", "name an active staff member", "approver")
            who, role = approver.username, approver.role
        try:
            campaign = await transition(
                session,
                campaign_id,
                data.action,
                who,
                role,
                config.console.campaign_approval,
                config.programme.zone,
                utcnow(),
            )
        except LookupError:
            raise ApiError(
                404, "unknown_campaign", "no campaign with this id", "campaign_id"
            ) from None
        except CampaignRefused as exc:
            raise ApiError(409, "refused", str(exc), "action") from None
        return _json(_out(campaign))


@api.route(
    "GET",
    "/campaigns/{campaign_id}/stats",
    "Targeted, sent, failed by errcode, skipped by reason, and conversion against the holdout",
    responses={200: CampaignStatsOut, 404: s.ErrorOut},
)
async def get_campaign_stats(request: web.Request) -> web.Response:
    campaign_id = id_param(request, "campaign_id", "unknown_campaign", "campaign")
    async with request.config_dict[wiring.SESSIONS]() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise ApiError(404, "unknown_campaign", "no campaign with this id", "campaign_id")
        rows = await campaign_stats(session, campaign)
    lift_of = lifts(rows)
    return _json(
        CampaignStatsOut(
            campaign=_out(campaign),
            variants=[
                VariantStatsOut(
                    **{k: getattr(r, k) for k in VariantStatsOut.model_fields if hasattr(r, k)},
                    lift=lift_of.get(r.variant),
                )
                for r in rows
            ],
        )
    )
