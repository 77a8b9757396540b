"""Campaigns through the JSON API, for teams that drive them from their own tools: preview an
audience, draft, submit, approve, pause, resume, cancel, and read the figures. The same rules
as in the console (scheduler/campaigns.py).

Approving is a person's act (the four-eyes rule), so a request cannot name who approves: only
a caller bound to one staff member (``[api] approvers``) approves, as that person, with their
role and only while their account is active; the approval is in the audit log like one made
in the console. Every other caller is refused with 403 and approves in the console instead. A
bound caller's drafts are that person's, so they cannot approve their own."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot import wiring
from bot.api import schemas as s
from bot.api.routes import CALLER, ApiError, _json, api, id_param, parse_body
from models.audience import Audience, preview
from models.base import utcnow
from models.campaign_rewards import RewardStats, reward_stats
from models.campaigns import Campaign, CampaignRefused, campaign_stats, lifts
from models.coupons import UnknownCouponKind
from models.staff import audit, find_staff
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
    reward: dict[str, str | int] | None = Field(
        description="the coupon kind (with its name and validity when defined) or the points"
    )


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["submit", "approve", "pause", "resume", "cancel"] = Field(
        description="approve: only by a caller bound to a staff member ([api] approvers)"
    )


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
    rewarded: int = Field(description="members given the campaign's reward (pushes sent)")
    coupons_issued: int
    coupons_redeemed: int = Field(description="of the coupons the campaign gave, redeemed")
    coupons_expired: int
    redemption_rate: float = Field(description="coupons redeemed / coupons issued")
    points_given: int


class CampaignStatsOut(BaseModel):
    campaign: CampaignOut
    variants: list[VariantStatsOut]


def _person_of(request: web.Request) -> str | None:
    """The staff member the calling token is bound to (``[api] approvers``), if any."""
    return request.config_dict[wiring.CONFIG].api.approvers.get(request[CALLER])


def _out(campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        schedule=campaign.schedule,
        next_run_at=campaign.next_run_at,
        created_by=campaign.created_by,
        approved_by=campaign.approved_by,
        reward=campaign.reward,
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
    "Draft a campaign (422 naming the field when the definition is wrong, e.g. a reward's "
    "coupon kind that is not configured)",
    body=CampaignSpec,
    responses={201: CampaignOut},
)
async def post_campaign(request: web.Request) -> web.Response:
    spec = await parse_body(request, CampaignSpec)
    rules = request.config_dict[wiring.CONFIG].programme
    try:
        campaign = new_campaign(spec, _person_of(request) or API_AUTHOR, utcnow(), rules)
    except UnknownCouponKind as exc:
        # As POST /coupons answers an unknown kind: the definition is invalid.
        raise ApiError(422, "invalid", str(exc), "reward.coupon") from None
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        session.add(campaign)
        await session.flush()
        return _json(_out(campaign), 201)


@api.route(
    "POST",
    "/campaigns/{campaign_id}/actions",
    "Submit, approve, pause, resume or cancel a campaign",
    body=ActionIn,
    responses={200: CampaignOut, 403: s.ErrorOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_campaign_action(request: web.Request) -> web.Response:
    campaign_id = id_param(request, "campaign_id", "unknown_campaign", "campaign")
    data = await parse_body(request, ActionIn)
    config = request.config_dict[wiring.CONFIG]
    person = _person_of(request)
    now = utcnow()
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        who, role, approver = person or API_AUTHOR, "api", None
        if data.action == "approve":
            if person is None:
                raise ApiError(
                    403,
                    "forbidden",
                    "this caller cannot approve campaigns: approve in the console, or with a "
                    "token bound to a staff member ([api] approvers)",
                    "action",
                )
            approver = await find_staff(session, person)
            if approver is None or approver.disabled:
                raise ApiError(
                    403, "forbidden", "the staff member this token is bound to is not active"
                )
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
                now,
            )
        except LookupError:
            raise ApiError(
                404, "unknown_campaign", "no campaign with this id", "campaign_id"
            ) from None
        except CampaignRefused as exc:
            raise ApiError(409, "refused", str(exc), "action") from None
        if approver is not None:
            await audit(
                session,
                approver.id,
                "campaign_approve",
                now,
                target=str(campaign_id),
                api_caller=request[CALLER],
            )
        return _json(_out(campaign))


@api.route(
    "GET",
    "/campaigns/{campaign_id}/stats",
    "Targeted, sent, failed by errcode, skipped by reason, conversion against the holdout, "
    "and the rewards given with their redemption",
    responses={200: CampaignStatsOut, 404: s.ErrorOut},
)
async def get_campaign_stats(request: web.Request) -> web.Response:
    campaign_id = id_param(request, "campaign_id", "unknown_campaign", "campaign")
    async with request.config_dict[wiring.SESSIONS]() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise ApiError(404, "unknown_campaign", "no campaign with this id", "campaign_id")
        rows = await campaign_stats(session, campaign)
        given = await reward_stats(session, campaign_id)
    lift_of = lifts(rows)
    none = RewardStats(0, 0, 0, 0, 0)
    return _json(
        CampaignStatsOut(
            campaign=_out(campaign),
            variants=[
                VariantStatsOut(
                    **{k: getattr(r, k) for k in VariantStatsOut.model_fields if hasattr(r, k)},
                    lift=lift_of.get(r.variant),
                    rewarded=given.get(r.variant, none).rewarded,
                    coupons_issued=given.get(r.variant, none).coupons_issued,
                    coupons_redeemed=given.get(r.variant, none).coupons_redeemed,
                    coupons_expired=given.get(r.variant, none).coupons_expired,
                    redemption_rate=given.get(r.variant, none).redemption_rate,
                    points_given=given.get(r.variant, none).points,
                )
                for r in rows
            ],
        )
    )
