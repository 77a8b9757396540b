"""Marketers' push campaigns: drafts, approval, schedules, runs, A/B splits with a holdout, and
the figures that say whether a campaign worked.

A campaign is ``draft`` → ``pending`` (submitted) → ``approved`` (by someone else: an admin,
or another marketer where allowed) → runs when due, once (``now``, ``at``) or on a crontab
(``cron``); ``paused`` runs nothing until resumed; ``cancelled`` also skips what is still
queued; a one-off campaign is ``done`` after its run.

Each run assigns its audience in one ``INSERT … SELECT``: a hash of member and run puts
``holdout_percent`` of members in the holdout (they receive nothing: the control group) and
splits the rest between the variants by their shares. Pushes are then planned from that table
in batches of members in id order (marketing pushes: quiet hours, caps, window or mass send —
bot/push/outbox.py), each batch committed with the run's checkpoint (``planned_through``, the
last member planned), so planning cut short by a crash resumes after it; ``planned`` says the
whole audience is planned, and only then is a one-off campaign ``done``. Stats
join the run's members to their deliveries and to the orders they placed within
``conversion_days`` of the run, per variant and for the holdout, so lift is measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    case,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.audience import Audience, compiler_for
from models.base import Base, UTCDateTime
from models.deliveries import Delivery
from models.members import Member
from models.orders import Order

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
CAMPAIGN = "campaign"
HOLDOUT = "holdout"
BUCKETS = 10_000


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status_next_run_at", "status", "next_run_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"name": "A", "text": "...", "share": 50}, …]: one or two variants, shares add to 100.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    holdout_percent: Mapped[int] = mapped_column(Integer, default=0)
    schedule: Mapped[str] = mapped_column(String(8))  # now, at, cron
    run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cron: Mapped[str | None] = mapped_column(String(64))
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    conversion_days: Mapped[int] = mapped_column(Integer, default=7)
    # What each treatment recipient gets when the push is sent (models/campaign_rewards.py):
    # {"coupon": kind, "name": …, "valid_days": n} or {"points": n}; None gives nothing.
    reward: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(32))
    approved_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignRun(Base):
    __tablename__ = "campaign_runs"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    targeted: Mapped[int] = mapped_column(BigInteger, default=0)
    # The whole audience is planned. Until then, members up to planned_through (in id order)
    # are: a planner that stopped, for whatever reason, is resumed after it.
    planned: Mapped[bool] = mapped_column(default=False)
    planned_through: Mapped[int] = mapped_column(BigInteger, default=0)


class CampaignMember(Base):
    """Who a run targeted and which variant (or the holdout) they were given."""

    __tablename__ = "campaign_members"

    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(16))


class CampaignRefused(Exception):
    """The action does not fit the campaign's state, or the person may not take it."""


def dedupe_key(run_id: int, member_id: int) -> str:
    return f"{CAMPAIGN}:{run_id}:{member_id}"


def _variant_case(variants: Sequence[dict[str, Any]], holdout_percent: int, run_id: int) -> Any:
    """The variant for each member, from a hash of member and run (a stable, even split)."""
    bucket = func.mod(Member.id * 2654435761 + run_id * 40503, BUCKETS)
    cut = holdout_percent * BUCKETS // 100
    whens = [(bucket < cut, literal(HOLDOUT))]
    edge = cut
    for variant in variants[:-1]:
        edge += (BUCKETS - cut) * int(variant["share"]) // 100
        whens.append((bucket < edge, literal(variant["name"])))
    return case(*whens, else_=literal(variants[-1]["name"]))


async def start_run(
    session: AsyncSession, campaign: Campaign, zone: ZoneInfo, now: datetime
) -> CampaignRun:
    """Create a run and assign its whole audience in one INSERT … SELECT."""
    run = CampaignRun(
        campaign_id=campaign.id, started_at=now, targeted=0, planned=False, planned_through=0
    )
    session.add(run)
    await session.flush()
    audience = Audience.model_validate(campaign.audience)
    where = compiler_for(session, zone).where(audience)
    variant = _variant_case(campaign.variants, campaign.holdout_percent, run.id)
    chosen = select(literal(run.id), Member.id, variant).where(where)
    result = await session.execute(
        insert(CampaignMember).from_select(["run_id", "member_id", "variant"], chosen)
    )
    run.targeted = result.rowcount or 0
    await session.flush()
    return run


async def recipients_after(
    session: AsyncSession, run_id: int, after: int, limit: int
) -> list[tuple[int, str]]:
    """(member, variant) of the run's next ``limit`` members after member id ``after`` who
    receive something, in id order (a keyset page on the primary key)."""
    rows = await session.execute(
        select(CampaignMember.member_id, CampaignMember.variant)
        .where(
            CampaignMember.run_id == run_id,
            CampaignMember.member_id > after,
            CampaignMember.variant != HOLDOUT,
        )
        .order_by(CampaignMember.member_id)
        .limit(limit)
    )
    return [(member_id, variant) for member_id, variant in rows]


async def unfinished_runs(session: AsyncSession) -> list[tuple[int, int]]:
    """(run, campaign) of runs whose audience is not all planned, of campaigns still approved
    (a paused campaign's run waits for the resume; a cancelled one's is over), oldest first."""
    rows = await session.execute(
        select(CampaignRun.id, CampaignRun.campaign_id)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRun.planned.is_(False), Campaign.status == "approved")
        .order_by(CampaignRun.id)
    )
    return [(run_id, campaign_id) for run_id, campaign_id in rows]


async def advance_checkpoint(session: AsyncSession, run_id: int, through: int, to: int) -> bool:
    """Move the run's checkpoint from ``through`` to ``to`` (a compare-and-set, and the
    transaction's first write, so two planners never plan the same batch); False: another
    planner moved it first."""
    result = await session.execute(
        update(CampaignRun)
        .where(
            CampaignRun.id == run_id,
            CampaignRun.planned.is_(False),
            CampaignRun.planned_through == through,
        )
        .values(planned_through=to)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def still_approved(session: AsyncSession, campaign_id: int) -> bool:
    """Whether the campaign may go on being planned; the row is held (shared) until the
    transaction ends, so a cancel waits for a batch being planned and then skips it too."""
    status = await session.scalar(
        select(Campaign.status).where(Campaign.id == campaign_id).with_for_update(read=True)
    )
    return status == "approved"


async def finish_run(session: AsyncSession, run_id: int, campaign_id: int, now: datetime) -> bool:
    """The run's whole audience is planned: record it, and a campaign with no next run is
    ``done``. False when the campaign is no longer approved: the caller rolls back, and a
    paused campaign's run is finished after the resume."""
    await session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id)
        .values(planned=True)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "approved")
        .values(
            status=case((Campaign.next_run_at.is_(None), literal("done")), else_=Campaign.status),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def due_campaigns(session: AsyncSession, now: datetime) -> list[int]:
    """Approved campaigns whose next run is due."""
    rows = await session.scalars(
        select(Campaign.id)
        .where(Campaign.status == "approved", Campaign.next_run_at <= now)
        .order_by(Campaign.next_run_at)
    )
    return list(rows)


async def claim_due(
    session: AsyncSession, campaign_id: int, now: datetime, next_run_at: datetime | None
) -> bool:
    """Take a due run for this process (one conditional UPDATE: two processes never both do)
    and move the campaign to its next run, if any. A campaign with none stays approved until
    its run's whole audience is planned (``finish_run``)."""
    values: dict[str, Any] = {"next_run_at": next_run_at, "updated_at": now}
    result = await session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == "approved",
            Campaign.next_run_at <= now,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


async def skip_queued(session: AsyncSession, campaign_id: int, now: datetime) -> int:
    """A cancelled campaign's pushes still queued are skipped (``cancelled``)."""
    runs = select(CampaignRun.id).where(CampaignRun.campaign_id == campaign_id)
    keys = select(_key(CampaignMember.run_id, CampaignMember.member_id)).where(
        CampaignMember.run_id.in_(runs)
    )
    result = await session.execute(
        update(Delivery)
        .where(Delivery.status == "queued", Delivery.dedupe_key.in_(keys))
        .values(status="skipped", reason="cancelled", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


@dataclass(frozen=True, slots=True)
class VariantStats:
    """One variant's (or the holdout's) figures for a campaign."""

    variant: str
    targeted: int
    sent: int
    failed: dict[str, int]  # errcode → count
    skipped: dict[str, int]  # reason → count
    converted: int  # members with an order in the conversion window
    orders: int
    spend_fen: int

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.targeted if self.targeted else 0.0


def lift(variant_rate: float, holdout_rate: float) -> float | None:
    """Relative lift of a variant's conversion over the holdout's (None without a baseline)."""
    if holdout_rate <= 0:
        return None
    return (variant_rate - holdout_rate) / holdout_rate


def lifts(stats: Sequence[VariantStats]) -> dict[str, float | None]:
    """Each variant's lift over the holdout (none without a holdout)."""
    holdout = next((s for s in stats if s.variant == HOLDOUT), None)
    if holdout is None:
        return {}
    return {
        s.variant: lift(s.conversion_rate, holdout.conversion_rate)
        for s in stats
        if s.variant != HOLDOUT
    }


async def campaign_stats(session: AsyncSession, campaign: Campaign) -> list[VariantStats]:
    """Per variant and holdout, over all the campaign's runs: targeted, delivery outcomes, and
    conversion within ``conversion_days`` of each run (two grouped statements, then one per
    run: a recurring campaign has as many runs as it has had sends)."""
    runs = select(CampaignRun.id).where(CampaignRun.campaign_id == campaign.id).subquery()
    members = CampaignMember.__table__
    counted = await session.execute(
        select(members.c.variant, func.count())
        .where(members.c.run_id.in_(select(runs.c.id)))
        .group_by(members.c.variant)
    )
    targeted = {variant: count for variant, count in counted}
    key = _key(members.c.run_id, members.c.member_id)
    outcomes = await session.execute(
        select(
            members.c.variant,
            Delivery.status,
            func.coalesce(Delivery.reason, ""),
            func.coalesce(Delivery.errcode, 0),
            func.count(),
        )
        .join(Delivery, Delivery.dedupe_key == key)
        .where(members.c.run_id.in_(select(runs.c.id)))
        .group_by(members.c.variant, Delivery.status, Delivery.reason, Delivery.errcode)
    )
    sent: dict[str, int] = {}
    failed: dict[str, dict[str, int]] = {}
    skipped: dict[str, dict[str, int]] = {}
    for variant, status, reason, errcode, count in outcomes:
        if status == "sent":
            sent[variant] = sent.get(variant, 0) + count
        elif status in ("failed", "skipped"):
            # Several (reason, errcode) groups fold into one key: add them up.
            by = failed if status == "failed" else skipped
            key = str(errcode or reason) if status == "failed" else reason or "unknown"
            counts = by.setdefault(variant, {})
            counts[key] = counts.get(key, 0) + count
    converted: dict[str, tuple[int, int, int]] = {}
    started = await session.execute(
        select(CampaignRun.id, CampaignRun.started_at).where(CampaignRun.campaign_id == campaign.id)
    )
    for run_id, started_at in started:
        # Per run: its own conversion window (a recurring campaign has a few runs, not many).
        rows = await session.execute(
            select(
                members.c.variant,
                func.count(func.distinct(Order.member_id)),
                func.count(Order.id),
                func.coalesce(func.sum(Order.amount_fen - Order.refunded_fen), 0),
            )
            .join(Order, Order.member_id == members.c.member_id)
            .where(
                members.c.run_id == run_id,
                Order.paid_at >= started_at,
                Order.paid_at < started_at + timedelta(days=campaign.conversion_days),
            )
            .group_by(members.c.variant)
        )
        for variant, people, orders, spend in rows:
            before = converted.get(variant, (0, 0, 0))
            converted[variant] = (before[0] + people, before[1] + orders, before[2] + int(spend))
    names = [v["name"] for v in campaign.variants] + [HOLDOUT]
    return [
        VariantStats(
            variant=name,
            targeted=targeted.get(name, 0),
            sent=sent.get(name, 0),
            failed=failed.get(name, {}),
            skipped=skipped.get(name, {}),
            converted=converted.get(name, (0, 0, 0))[0],
            orders=converted.get(name, (0, 0, 0))[1],
            spend_fen=converted.get(name, (0, 0, 0))[2],
        )
        for name in names
        if name != HOLDOUT or campaign.holdout_percent > 0
    ]


def _key(run_id: Any, member_id: Any) -> Any:
    """The delivery dedupe key of a run's member, in SQL (``||`` on every database)."""
    return literal(CAMPAIGN + ":") + cast(run_id, String) + literal(":") + cast(member_id, String)
