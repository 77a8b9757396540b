"""Member events (models/events.py) turned into pushes through the outbox.

An event is written in the transaction of the change it records; here, in one transaction,
the events still unprocessed become delivery rows (keyed by event, so planning twice plans
once) and are marked processed; the rows go on the stream after that commits.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from bot.tasks import every
from messages import benefit_copy, copy, referral_copy
from models.base import utcnow
from models.benefit_settings import BenefitsConfig
from models.benefits.engine import BENEFIT_GRANTED, active_benefits, granted_from
from models.benefits.orders import ORDER_CREDITED
from models.benefits.perks import tier_perks
from models.deliveries import SERVICE, PlannedPush, plan
from models.events import MemberEvent, mark_processed, unprocessed_events
from models.referrals import REFERRAL_REWARDED, REFERRAL_STAR
from models.rules import ProgrammeRules

TIER_UPGRADED = "tier_upgraded"


def _tier_upgraded(
    event: MemberEvent,
    rules: ProgrammeRules,
    config: BenefitsConfig,
    lanes: Collection[str] = (),
) -> dict[str, Any]:
    """The upgrade push: the tier's perks as the active rules give them, then the gifts the
    upgrade actually granted (none when their rules were paused or spent)."""
    tier = rules.tier(event.payload["to"])
    perks = "、".join(
        benefit_copy.perk_text(p) for p in tier_perks(rules, config, tier.code, lanes)
    )
    gifts = ""
    for given in map(granted_from, event.payload.get("gifts", [])):
        kind = rules.coupon_kind(given.coupon_kind) if given.coupon_kind else None
        words = benefit_copy.gift_text(kind.name if kind else None, given.points)
        template = benefit_copy.GROWTH_GIFT if given.rule == "growth" else benefit_copy.UPGRADE_GIFT
        gifts += template.format(gift=words)
    return {
        "text": benefit_copy.TIER_UPGRADED.format(name=tier.name, perks=perks, gifts=gifts),
        "fields": {
            "title": copy.TIER_UPGRADED_TITLE.format(name=tier.name),
            "tier": tier.name,
            "benefits": perks,
            "note": copy.TIER_UPGRADED_NOTE,
        },
    }


def _benefit_granted(
    event: MemberEvent, rules: ProgrammeRules, config: BenefitsConfig
) -> dict[str, Any] | None:
    """A triggered rule's gift (复购赠礼): worded from what was granted."""
    given = granted_from(event.payload)
    template = GRANTED_COPY.get(given.rule)
    if template is None:
        return None
    kind = rules.coupon_kind(given.coupon_kind) if given.coupon_kind else None
    text = template.format(
        gift=benefit_copy.gift_text(kind.name if kind else None, given.points),
        until=benefit_copy.until_text(given.valid_until, rules.zone),
    )
    fields = {"title": benefit_copy.GIFT_TITLE, "content": text, "note": benefit_copy.GIFT_NOTE}
    return {"text": text, "fields": fields}


# Triggered rules whose grants are pushed (welcome is told in the chat reply, the upgrade
# gifts in the upgrade push).
GRANTED_COPY = {"repeat_order": benefit_copy.REPEAT_ORDER}


def _order_credited(
    event: MemberEvent, rules: ProgrammeRules, config: BenefitsConfig
) -> dict[str, Any] | None:
    """The points notice after a paid order (the rule may have been paused since)."""
    if not config.order_notice.enabled:
        return None
    p = event.payload
    boost = ""
    if p.get("boost"):
        boost = benefit_copy.ORDER_BOOST.format(name=p["boost"], points=p["boost_points"])
    text = benefit_copy.ORDER_CREDITED.format(
        order=p["order"], points=p["points"], boost=boost, balance=p["balance"]
    )
    return {
        "text": text,
        "fields": {
            "title": benefit_copy.ORDER_CREDITED_TITLE,
            "order": str(p["order"]),
            "points": str(p["points"]),
            "balance": str(p["balance"]),
            "content": text,
            "note": benefit_copy.ORDER_CREDITED_NOTE,
        },
    }


def _referral_rewarded(
    event: MemberEvent, rules: ProgrammeRules, config: BenefitsConfig
) -> dict[str, Any]:
    points = event.payload["points"]
    return {
        "text": referral_copy.REWARDED.format(points=points),
        "fields": {"title": referral_copy.REWARDED.format(points=points), "points": str(points)},
    }


def _referral_star(
    event: MemberEvent, rules: ProgrammeRules, config: BenefitsConfig
) -> dict[str, Any]:
    text = referral_copy.STAR.format(
        quarter=event.payload["quarter"],
        count=event.payload["referrals"],
        points=event.payload["points"],
    )
    return {"text": text, "fields": {"title": text, "points": str(event.payload["points"])}}


# Event kind → the payload of its push, or None for no push (the kind is also the purpose).
_PUSHES: dict[str, Callable[[MemberEvent, ProgrammeRules, BenefitsConfig], Any]] = {
    TIER_UPGRADED: _tier_upgraded,
    BENEFIT_GRANTED: _benefit_granted,
    ORDER_CREDITED: _order_credited,
    REFERRAL_REWARDED: _referral_rewarded,
    REFERRAL_STAR: _referral_star,
}


async def plan_event_pushes(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
    limit: int = 1000,
    lanes: Collection[str] = (),
) -> int:
    """Plan the pushes for up to ``limit`` unprocessed events; how many events were taken.
    ``lanes``: the tiers customer service serves first (the upgrade push lists 专属客服)."""
    builders = _PUSHES | {TIER_UPGRADED: functools.partial(_tier_upgraded, lanes=lanes)}
    planned: list[int] = []
    async with sessions.begin() as session:
        events = await unprocessed_events(session, limit)
        config = await active_benefits(session, rules)
        for kind, build in builders.items():
            built = [(event, build(event, rules, config)) for event in events if event.kind == kind]
            pushes = [
                PlannedPush(event.member_id, f"{event.kind}:{event.id}", payload)
                for event, payload in built
                if payload is not None
            ]
            planned += await plan(session, kind, SERVICE, pushes, now)
        await mark_processed(session, (event.id for event in events), now)
    await outbox.enqueue(planned)
    return len(events)


async def notify_forever(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    stop: asyncio.Event,
    interval: float = 1.0,
    lanes: Collection[str] = (),
) -> None:
    """Plan event pushes every ``interval`` seconds until ``stop`` is set."""

    async def plan_all() -> None:
        while await plan_event_pushes(sessions, outbox, rules, utcnow(), lanes=lanes):
            pass

    await every(interval, stop, plan_all, "planning event pushes")
