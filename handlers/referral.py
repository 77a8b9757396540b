"""推荐 / 邀请, 我的推荐, and a friend arriving through a member's QR code."""

from __future__ import annotations

import logging

from handlers.inbound import Inbound
from handlers.router import Router, event, intent
from messages import referral_copy as copy
from messages.replies import TextReply
from models.base import utcnow
from models.deliveries import SERVICE, PlannedPush, plan
from models.members import Member
from models.referrals import (
    Referral,
    attribute,
    code_from_scene,
    newcomer_facts,
    referral_stats,
)
from models.rules import ProgrammeRules

log = logging.getLogger(__name__)
router = Router("referral")
REFERRAL_QR = "referral_qr"


def _offer(rules: ProgrammeRules) -> dict[str, str]:
    settings = rules.referrals
    window = settings.return_window_days
    newcomer = ""
    kind = rules.coupon_kind(settings.newcomer_coupon) if settings.newcomer_coupon else None
    if kind is not None:
        newcomer = copy.NEWCOMER_COUPON.format(coupon=kind.name)
    elif settings.newcomer_points:
        newcomer = copy.NEWCOMER_POINTS.format(points=settings.newcomer_points)
    return {
        "window": copy.WINDOW_AFTER.format(days=window) if window else "",
        "points": str(settings.referrer_points),
        "newcomer": newcomer,
    }


@router.on(intent("referral"))
async def share(msg: Inbound) -> TextReply:
    """The member's share link now; the QR image follows as a customer-service message."""
    if msg.member_id is None:
        raise RuntimeError("referral asked without a member")
    now = utcnow()
    shared = await msg.svc.shares.share(msg.member_id, now)
    lines = [copy.SHARE.format(url=shared.page_url, **_offer(msg.svc.rules))]
    stats = await referral_stats(msg.db, msg.svc.rules, msg.member_id, now)
    if stats.pending:
        points = stats.pending * msg.svc.rules.referrals.referrer_points
        lines.append(copy.PENDING.format(count=stats.pending, points=points))
    if shared.media_id is None:
        lines.append(copy.SHARE_NO_IMAGE)
        return TextReply("\n".join(lines))
    # Keyed by the message's time: WeChat's retries of it are already answered by the gate.
    key = f"{REFERRAL_QR}:{msg.member_id}:{int(msg.sent_at.timestamp())}"
    push = PlannedPush(msg.member_id, key, {"image": shared.media_id})
    ids = await plan(msg.db, REFERRAL_QR, SERVICE, [push], now)
    await msg.db.commit()
    await msg.svc.pushes.enqueue(ids)
    return TextReply("\n".join(lines))


@router.on(intent("my_referrals"))
async def my_referrals(msg: Inbound) -> TextReply:
    """我的推荐: friends joined and bought, points earned, this quarter's count."""
    if msg.member_id is None:
        raise RuntimeError("referrals asked without a member")
    rules = msg.svc.rules
    stats = await referral_stats(msg.db, rules, msg.member_id, utcnow())
    if stats.joined == 0:
        return TextReply(copy.STATS_NONE)
    lines = [
        copy.STATS.format(
            joined=stats.joined,
            bought=stats.bought,
            points=stats.points_earned,
            quarter=stats.quarter_rewarded,
        )
    ]
    if stats.pending:
        lines.append(copy.STATS_PENDING.format(count=stats.pending))
    if stats.star:
        lines.append(copy.STATS_STAR)
    else:
        left = rules.referrals.star_threshold - stats.quarter_rewarded
        lines.append(copy.STATS_TO_STAR.format(left=left, bonus=rules.referrals.star_bonus_points))
    return TextReply("\n".join(lines))


async def attribute_newcomer(msg: Inbound, member: Member, source: str) -> Referral | None:
    """Attribute a follow or scan through a referral QR code (``msg.key`` is the scene); an
    unknown or malformed code, or a refused attribution, is logged and ignored."""
    code = code_from_scene(msg.key)
    if code is None:
        if msg.key:
            log.info("QR scene is not a referral code", extra={"source": source})
        return None
    facts = await newcomer_facts(msg.db, member)
    referral, refused = await attribute(msg.db, msg.svc.rules, code, facts, source, utcnow())
    if refused is not None:
        log.info("referral not attributed", extra={"reason": refused, "source": source})
    return referral


@router.on(event("scan"))
async def scanned(msg: Inbound) -> None:
    """A follower scanned a QR code: a friend's counts only just after their first follow, on
    the same rules as following through it."""
    member = await msg.load_member()
    await attribute_newcomer(msg, member, source="scan")
