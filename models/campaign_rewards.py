"""What a campaign gives its recipients: a coupon of a configured kind or points, issued when
the push is sent, once per campaign and member.

A campaign's ``reward`` is resolved when it is defined (``reward_terms``: the coupon kind is
checked against the programme's kinds and its validity frozen, so the offer a marketer approved
is the offer members get). The planner copies the terms into each treatment push's payload
(the holdout is never planned, so it gets nothing); the delivery worker, in the transaction
that records the pushes as sent, hands the sent ones to ``issue_rewards``. Nothing is issued
for a push that failed, was skipped or was interrupted.

``issue_rewards`` is a handful of statements per batch of pushes, whatever its size: one
``INSERT … ON CONFLICT DO NOTHING`` into ``campaign_rewards`` (primary key campaign and
member) decides who is rewarded now, so a retried batch, a reclaimed row, a second worker or
a recurring campaign's next run reward nobody twice (on PostgreSQL a concurrent insert of the
same key waits for the first and then does nothing); then one multi-row insert of coupons and
one bulk credit of points (``models/ledger.credit_many``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    and_,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.campaigns import CampaignMember
from models.coupons import CODE_ATTEMPTS, Coupon, UnknownCouponKind, new_coupon_code
from models.deliveries import Delivery
from models.ledger import credit_many
from models.orders import lot_expiry
from models.rules import ProgrammeRules

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
# More points than this for one push is a typo, not an offer (¥1 earns 1 point at basic tier).
MAX_POINTS = 10_000
CAMPAIGN_REWARD = "campaign_reward"


class CampaignReward(Base):
    """One member's reward from one campaign: the coupon it issued or the points it credited."""

    __tablename__ = "campaign_rewards"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    # The push whose sending issued it (its run and variant are the campaign_members row's).
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id"))
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    points: Mapped[int | None] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Reward(BaseModel):
    """What each recipient in the treatment group gets: a coupon kind, or points."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coupon: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="a coupon kind configured in [[programme.coupons]]",
    )
    points: int | None = Field(default=None, ge=1, le=MAX_POINTS)

    @model_validator(mode="after")
    def _one(self) -> Reward:
        if (self.coupon is None) == (self.points is None):
            raise ValueError("a reward is a coupon or points, not both nor neither")
        return self


def reward_terms(reward: Reward | None, rules: ProgrammeRules) -> dict[str, Any] | None:
    """The reward as stored on the campaign: the coupon kind with its name and validity as
    configured now, or the points. UnknownCouponKind when the kind is not configured."""
    if reward is None:
        return None
    if reward.points is not None:
        return {"points": reward.points}
    assert reward.coupon is not None
    kind = rules.coupon_kind(reward.coupon)
    if kind is None:
        raise UnknownCouponKind(f"no coupon kind {reward.coupon!r} is configured")
    return {"coupon": kind.code, "name": kind.name, "valid_days": kind.valid_days}


@dataclass(frozen=True, slots=True)
class Grant:
    """A sent push's reward, to issue."""

    campaign_id: int
    run_id: int
    member_id: int
    delivery_id: int
    coupon: str | None
    valid_days: int
    points: int | None


def reward_payload(terms: dict[str, Any], campaign_id: int, run_id: int) -> dict[str, Any]:
    """What a treatment push's payload carries under ``reward``."""
    return {**terms, "campaign": campaign_id, "run": run_id}


def grant_of(delivery_id: int, member_id: int, payload: dict[str, Any]) -> Grant | None:
    """The reward a push's payload carries, if any."""
    terms = payload.get("reward")
    if not terms:
        return None
    return Grant(
        campaign_id=int(terms["campaign"]),
        run_id=int(terms["run"]),
        member_id=member_id,
        delivery_id=delivery_id,
        coupon=terms.get("coupon"),
        valid_days=int(terms.get("valid_days") or 0),
        points=terms.get("points"),
    )


async def grants_of_deliveries(session: AsyncSession, delivery_ids: Sequence[int]) -> list[Grant]:
    """The rewards of these deliveries (a mass send's, whose payloads the worker no longer
    holds): one statement."""
    if not delivery_ids:
        return []
    rows = await session.execute(
        select(Delivery.id, Delivery.member_id, Delivery.payload).where(
            Delivery.id.in_(list(delivery_ids)), Delivery.purpose == "campaign"
        )
    )
    return [g for d, m, p in rows if (g := grant_of(d, m, p)) is not None]


def coupon_key(campaign_id: int, member_id: int) -> str:
    """The idempotency key of a campaign's coupon (and points) for a member."""
    return f"campaign:{campaign_id}:{member_id}"


async def issue_rewards(
    session: AsyncSession, grants: Iterable[Grant], rules: ProgrammeRules, now: datetime
) -> int:
    """Issue the rewards of sent pushes, in the caller's transaction; how many were new.

    A member already rewarded by the campaign gets nothing more (see the module docstring)."""
    unique = {(g.campaign_id, g.member_id): g for g in grants}
    if not unique:
        return 0
    insert = dialect_insert(session)
    table = CampaignReward.__table__
    codes = {key: new_coupon_code() if g.coupon else None for key, g in unique.items()}
    connection = await session.connection()
    new = (
        await connection.execute(
            insert(table)
            .on_conflict_do_nothing(index_elements=[table.c.campaign_id, table.c.member_id])
            .returning(table.c.campaign_id, table.c.member_id),
            [
                {
                    "campaign_id": g.campaign_id,
                    "member_id": g.member_id,
                    "delivery_id": g.delivery_id,
                    "run_id": g.run_id,
                    "coupon_code": codes[key],
                    "points": g.points,
                    "issued_at": now,
                }
                for key, g in unique.items()
            ],
        )
    ).all()
    granted = [unique[(c, m)] for c, m in new]
    await _issue_coupons(session, [g for g in granted if g.coupon], codes, now)
    pointed = [g for g in granted if g.points]
    if pointed:
        await credit_many(
            session,
            [
                (g.member_id, int(g.points or 0), coupon_key(g.campaign_id, g.member_id))
                for g in pointed
            ],
            kind="bonus",
            reason=CAMPAIGN_REWARD,
            at=now,
            expires_at=lot_expiry(rules, now),
        )
    return len(granted)


async def _issue_coupons(
    session: AsyncSession,
    grants: list[Grant],
    codes: dict[tuple[int, int], str | None],
    now: datetime,
) -> None:
    """One multi-row insert; a code already taken (31^12 codes: next to never) is drawn again
    and the reward row follows it."""
    insert = dialect_insert(session)
    table = Coupon.__table__
    pending = grants
    for _ in range(CODE_ATTEMPTS):
        if not pending:
            return
        rows = [
            {
                "code": codes[(g.campaign_id, g.member_id)],
                "member_id": g.member_id,
                "kind": g.coupon,
                "status": "issued",
                "reason": f"{CAMPAIGN_REWARD}:{g.campaign_id}",
                "idempotency_key": coupon_key(g.campaign_id, g.member_id),
                "issued_at": now,
                "valid_from": now,
                "valid_until": now + timedelta(days=max(g.valid_days, 1)),
            }
            for g in pending
        ]
        connection = await session.connection()
        written = set(
            (
                await connection.execute(
                    insert(table).on_conflict_do_nothing().returning(table.c.idempotency_key),
                    rows,
                )
            ).scalars()
        )
        missing = [g for g in pending if coupon_key(g.campaign_id, g.member_id) not in written]
        if not missing:
            return
        # Issued before under this key: nothing to do for those. The rest met a taken code.
        keys = [coupon_key(g.campaign_id, g.member_id) for g in missing]
        existing = set(
            (
                await session.scalars(
                    select(Coupon.idempotency_key).where(Coupon.idempotency_key.in_(keys))
                )
            ).all()
        )
        pending = [g for g in missing if coupon_key(g.campaign_id, g.member_id) not in existing]
        for g in pending:
            code = new_coupon_code()
            codes[(g.campaign_id, g.member_id)] = code
            await session.execute(
                update(CampaignReward)
                .where(
                    CampaignReward.campaign_id == g.campaign_id,
                    CampaignReward.member_id == g.member_id,
                )
                .values(coupon_code=code)
                .execution_options(synchronize_session=False)
            )
    if pending:
        raise RuntimeError(f"no free coupon code after {CODE_ATTEMPTS} attempts")


@dataclass(frozen=True, slots=True)
class RewardStats:
    """What a campaign gave one variant's members, and what became of it."""

    rewarded: int  # members given the reward
    coupons_issued: int
    coupons_redeemed: int
    coupons_expired: int
    points: int

    @property
    def redemption_rate(self) -> float:
        """Coupons redeemed / coupons issued (0 without coupons)."""
        return self.coupons_redeemed / self.coupons_issued if self.coupons_issued else 0.0


async def reward_stats(session: AsyncSession, campaign_id: int) -> dict[str, RewardStats]:
    """Per variant: members rewarded, coupons issued, redeemed and expired, points given (one
    grouped statement over the campaign's rewards; the holdout has none)."""
    rows = await session.execute(
        select(
            CampaignMember.variant,
            func.count(),
            func.count(CampaignReward.coupon_code),
            func.count(case((Coupon.status == "redeemed", 1))),
            func.count(case((Coupon.status == "expired", 1))),
            func.coalesce(func.sum(CampaignReward.points), 0),
        )
        .select_from(CampaignReward)
        .join(
            CampaignMember,
            and_(
                CampaignMember.run_id == CampaignReward.run_id,
                CampaignMember.member_id == CampaignReward.member_id,
            ),
        )
        .outerjoin(Coupon, Coupon.code == CampaignReward.coupon_code)
        .where(CampaignReward.campaign_id == campaign_id)
        .group_by(CampaignMember.variant)
    )
    return {
        variant: RewardStats(int(n), int(issued), int(redeemed), int(expired), int(points))
        for variant, n, issued, redeemed, expired, points in rows
    }
