"""老带新: referral links, who referred whom, and the rewards once a friend's first order stands.

A member's link carries a referral code; WeChat's QR code for it carries the scene
``ref_<code>``. A newcomer who follows through it (or, having just followed, scans it) is
attributed to the referrer: first touch wins, nobody refers themselves, and someone who was
already a member, customer or follower (an earlier unfollow included) cannot be referred,
whichever the touch (``refusal``).

A referral moves ``joined`` → ``pending`` (the friend's first order, reward due after the
return window) → ``rewarded`` (both rewarded, on the ledger like any points) or ``cancelled``
(that order refunded in full before the reward was due) or ``capped`` (the referrer's daily
reward cap was reached: recorded, not rewarded). With a return window of 0 the reward is
immediate and a full refund of that order claws it back (``reversed``): the points are taken
back as far as the balance allows and an unused newcomer coupon is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.codes import ALPHABET, random_code
from models.coupons import Coupon, issue_coupon
from models.events import record_event
from models.ledger import credit, take_back
from models.members import Member
from models.orders import Order, lot_expiry
from models.rules import ProgrammeRules

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
CODE_LENGTH = 8
SCENE_PREFIX = "ref_"
REFERRAL_REWARDED = "referral_rewarded"
REFERRAL_STAR = "referral_star"


# Ledger and coupon reasons are codes; messages/referral_copy.py words them for members.
REASON_REFERRER = "referral:referrer"
REASON_NEWCOMER = "referral:newcomer"
REASON_STAR = "referral:star"
REASON_CLAWED_BACK = "referral:clawed_back"


class ReferralLink(Base):
    """A member's referral code and the WeChat QR code and image made for it (cached)."""

    __tablename__ = "referral_links"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    qr_ticket: Mapped[str | None] = mapped_column(String(200))
    qr_url: Mapped[str | None] = mapped_column(String(200))
    qr_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    media_id: Mapped[str | None] = mapped_column(String(200))
    media_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(Base):
    """One newcomer attributed to one referrer (a newcomer has at most one: first touch)."""

    __tablename__ = "referrals"
    __table_args__ = (Index("ix_referrals_status_reward_due_at", "status", "reward_due_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    referee_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # subscribe or scan
    status: Mapped[str] = mapped_column(String(16), default="joined")
    attributed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    reward_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    newcomer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    newcomer_coupon: Mapped[str | None] = mapped_column(String(32))  # the coupon's code


class ReferralStar(Base):
    """推荐之星: awarded once per member and calendar quarter (e.g. ``2026Q4``)."""

    __tablename__ = "referral_stars"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(8), primary_key=True)
    referrals: Mapped[int] = mapped_column(Integer)
    bonus_points: Mapped[int] = mapped_column(BigInteger)
    awarded_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Share:
    """What 推荐 answers with: the code, its page, and the QR image's media id (if made)."""

    code: str
    page_url: str
    media_id: str | None


def new_referral_code() -> str:
    """Eight unambiguous characters (about 10^11.6 codes)."""
    return random_code(CODE_LENGTH)


def referral_code(text: str) -> str | None:
    """``text`` as a referral code (case folded), or None when it cannot be one."""
    code = text.upper()
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def code_from_scene(scene: str) -> str | None:
    """The referral code in a QR scene (``ref_<code>``), or None for any other scene."""
    if not scene.startswith(SCENE_PREFIX):
        return None
    return referral_code(scene.removeprefix(SCENE_PREFIX))


def quarter_of(at: datetime, zone: ZoneInfo) -> str:
    """The local calendar quarter, e.g. ``2026Q4``."""
    local = at.astimezone(zone)
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def _quarter_start(at: datetime, zone: ZoneInfo) -> datetime:
    local = at.astimezone(zone)
    return local.replace(
        month=(local.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0
    )


async def link_for(session: AsyncSession, member_id: int, now: datetime) -> ReferralLink:
    """The member's referral link, made on first use (a concurrent first use gets the same)."""
    existing = await session.get(ReferralLink, member_id)
    if existing is not None:
        return existing
    insert = dialect_insert(session)
    for _ in range(5):
        stmt = (
            insert(ReferralLink)
            .values(member_id=member_id, code=new_referral_code(), created_at=now)
            .on_conflict_do_nothing()
        )
        await session.execute(stmt)
        link = await session.get(ReferralLink, member_id, populate_existing=True)
        if link is not None:
            return link
        # Otherwise the random code was taken: draw another.
    raise RuntimeError("no free referral code after 5 attempts")


async def link_by_code(session: AsyncSession, code: str) -> ReferralLink | None:
    """The link with this code, if any."""
    return await session.scalar(select(ReferralLink).where(ReferralLink.code == code.upper()))


@dataclass(frozen=True, slots=True)
class Newcomer:
    """What attribution needs to know about the person who followed or scanned."""

    member_id: int
    # Known before their current follow: a member row older than it (a shop's customer, a
    # follower whose follow we never saw) or an earlier follow they have since undone.
    existed_before: bool
    followed_at: datetime  # their current follow
    has_orders: bool
    already_referred: bool


def refusal(
    rules: ProgrammeRules,
    source: str,
    referrer_id: int | None,
    newcomer: Newcomer,
    now: datetime,
) -> str | None:
    """Why this touch does not attribute ``newcomer`` to ``referrer_id``, or None if it does.

    ``source`` is ``subscribe`` (followed through the code) or ``scan`` (already following).
    The same rules hold for both; a scan only counts within ``scan_grace_hours`` of the
    follow (someone who found the account by search a moment before scanning).
    """
    if referrer_id is None:
        return "unknown_code"
    if referrer_id == newcomer.member_id:
        return "self"
    if newcomer.already_referred:
        return "already_referred"
    if newcomer.has_orders or newcomer.existed_before:
        return "existing_member"
    grace = timedelta(hours=rules.referrals.scan_grace_hours)
    if source == "scan" and now - newcomer.followed_at > grace:
        return "existing_member"
    return None


async def newcomer_facts(session: AsyncSession, member: Member) -> Newcomer:
    """The facts ``refusal`` weighs, read for ``member`` (who follows: a subscribe has just
    been recorded, or a scan comes from a follower).

    A first follow makes the member row, with ``created_at`` and ``subscribed_at`` the same
    moment. Any other history leaves them apart: a re-follow after an unfollow moves
    ``subscribed_at`` on (and clears ``unsubscribed_at``, so that cannot tell), a row made
    before the follow (a shop's customer, a binding) is older, and a follower whose follow we
    never saw has no ``subscribed_at`` at all.
    """
    ordered = await session.scalar(select(Order.id).where(Order.member_id == member.id).limit(1))
    referred = await session.scalar(select(Referral.id).where(Referral.referee_id == member.id))
    followed_at = member.subscribed_at
    return Newcomer(
        member_id=member.id,
        existed_before=followed_at is None or followed_at != member.created_at,
        followed_at=followed_at or member.created_at,
        has_orders=ordered is not None,
        already_referred=referred is not None,
    )


async def attribute(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    newcomer: Newcomer,
    source: str,
    now: datetime,
) -> tuple[Referral | None, str | None]:
    """Attribute the newcomer to the code's owner: the referral, or None and the reason."""
    link = await link_by_code(session, code)
    reason = refusal(rules, source, link.member_id if link else None, newcomer, now)
    if reason is not None or link is None:
        return None, reason
    insert = dialect_insert(session)
    stmt = (
        insert(Referral)
        .values(
            referrer_id=link.member_id,
            referee_id=newcomer.member_id,
            code=link.code,
            source=source,
            status="joined",
            attributed_at=now,
            referrer_points=0,
            newcomer_points=0,
        )
        .on_conflict_do_nothing()
        .returning(Referral)
    )
    referral = await session.scalar(stmt)
    if referral is None:  # a concurrent first touch won
        return None, "already_referred"
    return referral, None


async def note_first_order(
    session: AsyncSession, rules: ProgrammeRules, member_id: int, order: Order, now: datetime
) -> Referral | None:
    """A referred member's first order starts the return window (or, with none, rewards at
    once). Later orders change nothing."""
    referral = await session.scalar(
        select(Referral).where(Referral.referee_id == member_id, Referral.status == "joined")
    )
    if referral is None:
        return None
    orders = await session.scalar(
        select(func.count()).select_from(Order).where(Order.member_id == member_id)
    )
    if orders != 1:
        return None
    referral.first_order_id = order.id
    referral.status = "pending"
    referral.reward_due_at = order.paid_at + timedelta(days=rules.referrals.return_window_days)
    if rules.referrals.return_window_days == 0:
        await settle(session, rules, referral, now)
    await session.flush()
    return referral


async def settle(
    session: AsyncSession, rules: ProgrammeRules, referral: Referral, now: datetime
) -> str:
    """Decide a pending referral whose reward is due: cancelled (its first order was refunded
    in full), capped (the referrer's daily cap is reached) or rewarded. Returns the status."""
    order = await session.get_one(Order, referral.first_order_id)
    if order.refunded_fen >= order.amount_fen:
        referral.status = "cancelled"
        return referral.status
    day_start = now.astimezone(rules.zone).replace(hour=0, minute=0, second=0, microsecond=0)
    rewarded_today = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(
            Referral.referrer_id == referral.referrer_id,
            Referral.status.in_(("rewarded", "reversed")),
            Referral.rewarded_at >= day_start,
        )
    )
    if (rewarded_today or 0) >= rules.referrals.daily_reward_cap:
        referral.status = "capped"
        return referral.status
    await _reward(session, rules, referral, now)
    return referral.status


async def _reward(
    session: AsyncSession, rules: ProgrammeRules, referral: Referral, now: datetime
) -> None:
    settings = rules.referrals
    for member_id, points, side, reason in (
        (referral.referrer_id, settings.referrer_points, "referrer", REASON_REFERRER),
        (referral.referee_id, settings.newcomer_points, "newcomer", REASON_NEWCOMER),
    ):
        if points:
            await credit(
                session,
                member_id,
                points,
                kind="bonus",
                reason=reason,
                key=f"referral:{referral.id}:{side}",
                at=now,
                expires_at=lot_expiry(rules, now),
            )
    if settings.newcomer_coupon:
        issued = await issue_coupon(
            session,
            rules,
            referral.referee_id,
            settings.newcomer_coupon,
            reason=REASON_NEWCOMER,
            key=f"referral:{referral.id}:newcomer",
            now=now,
        )
        referral.newcomer_coupon = issued.coupon.code
    referral.status = "rewarded"
    referral.rewarded_at = now
    referral.referrer_points = settings.referrer_points
    referral.newcomer_points = settings.newcomer_points
    await session.flush()
    await record_event(
        session,
        referral.referrer_id,
        REFERRAL_REWARDED,
        {"referral": referral.id, "points": settings.referrer_points},
        now,
    )
    await _maybe_star(session, rules, referral.referrer_id, now)


async def _maybe_star(
    session: AsyncSession, rules: ProgrammeRules, referrer_id: int, now: datetime
) -> None:
    settings = rules.referrals
    count = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(
            Referral.referrer_id == referrer_id,
            Referral.status == "rewarded",
            Referral.rewarded_at >= _quarter_start(now, rules.zone),
        )
    )
    if (count or 0) < settings.star_threshold:
        return
    quarter = quarter_of(now, rules.zone)
    stmt = (
        dialect_insert(session)(ReferralStar)
        .values(
            member_id=referrer_id,
            quarter=quarter,
            referrals=count,
            bonus_points=settings.star_bonus_points,
            awarded_at=now,
        )
        .on_conflict_do_nothing()
        .returning(ReferralStar.member_id)
    )
    if await session.scalar(stmt) is None:
        return  # already a star this quarter
    if settings.star_bonus_points:
        await credit(
            session,
            referrer_id,
            settings.star_bonus_points,
            kind="bonus",
            reason=f"{REASON_STAR}:{quarter}",
            key=f"referral_star:{referrer_id}:{quarter}",
            at=now,
            expires_at=lot_expiry(rules, now),
        )
    await record_event(
        session,
        referrer_id,
        REFERRAL_STAR,
        {"quarter": quarter, "referrals": count, "points": settings.star_bonus_points},
        now,
    )


async def note_refund(
    session: AsyncSession, rules: ProgrammeRules, order: Order, now: datetime
) -> None:
    """A referral's first order refunded in full: a pending reward is cancelled; an immediate
    reward (return window 0) is clawed back."""
    if order.refunded_fen < order.amount_fen:
        return
    referral = await session.scalar(select(Referral).where(Referral.first_order_id == order.id))
    if referral is None:
        return
    if referral.status == "pending":
        referral.status = "cancelled"
    elif referral.status == "rewarded" and rules.referrals.return_window_days == 0:
        for member_id, points, side in (
            (referral.referrer_id, referral.referrer_points, "referrer"),
            (referral.referee_id, referral.newcomer_points, "newcomer"),
        ):
            await take_back(
                session,
                member_id,
                points,
                kind="adjust",
                reason=REASON_CLAWED_BACK,
                key=f"referral:{referral.id}:{side}:reversed",
                at=now,
            )
        if referral.newcomer_coupon:
            await session.execute(
                update(Coupon)
                .where(Coupon.code == referral.newcomer_coupon, Coupon.status == "issued")
                .values(status="revoked")
            )
        referral.status = "reversed"
    await session.flush()


async def due_referrals(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Ids of pending referrals whose reward is due, oldest first."""
    rows = await session.scalars(
        select(Referral.id)
        .where(Referral.status == "pending", Referral.reward_due_at <= now)
        .order_by(Referral.reward_due_at, Referral.id)
        .limit(limit)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class ReferralStats:
    """我的推荐: the member's referrals at a glance."""

    joined: int
    bought: int
    rewarded: int
    points_earned: int
    pending: int
    quarter_rewarded: int
    star: bool


async def referral_stats(
    session: AsyncSession, rules: ProgrammeRules, member_id: int, now: datetime
) -> ReferralStats:
    """Counts for 我的推荐, in one statement over the member's referrals."""
    quarter_start = _quarter_start(now, rules.zone)
    row = (
        await session.execute(
            select(
                func.count(),
                func.count(Referral.first_order_id),
                func.count(case((Referral.status == "rewarded", 1))),
                func.coalesce(
                    func.sum(case((Referral.status == "rewarded", Referral.referrer_points))), 0
                ),
                func.count(case((Referral.status == "pending", 1))),
                func.count(
                    case(
                        (
                            (Referral.status == "rewarded")
                            & (Referral.rewarded_at >= quarter_start),
                            1,
                        )
                    )
                ),
            ).where(Referral.referrer_id == member_id)
        )
    ).one()
    stars = await session.scalar(
        select(func.coalesce(func.sum(ReferralStar.bonus_points), 0)).where(
            ReferralStar.member_id == member_id
        )
    )
    star_now = await session.get(ReferralStar, (member_id, quarter_of(now, rules.zone)))
    joined, bought, rewarded, points, pending, quarter = row
    return ReferralStats(
        joined=joined,
        bought=bought,
        rewarded=rewarded,
        points_earned=int(points) + int(stars or 0),
        pending=pending,
        quarter_rewarded=quarter,
        star=star_now is not None,
    )
