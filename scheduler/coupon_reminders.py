"""Unused coupons reminded once, ``coupon_reminder_days`` (3) before they expire.

A service notice, not marketing: it is about the member's own asset, as the points-expiry
reminder is, so no frequency cap or mass-send allowance applies and 退订 does not stop it.
The outbox exempts service notices from quiet hours; the job's crontab (10:00 local) keeps it
clear of them anyway.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import groupby

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from messages import coupon_copy
from models.coupon_reminders import DueCoupon, claim_reminders, coupons_to_remind
from models.deliveries import SERVICE, PlannedPush, plan
from models.rules import ProgrammeRules

COUPON_EXPIRING = "coupon_expiring"


async def plan_coupon_reminders(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    rules: ProgrammeRules,
    now: datetime,
) -> int:
    """Remind members of their unused coupons expiring within ``coupon_reminder_days``; the
    coupons a member has expiring on one local day are one message. Each coupon is claimed
    (models/coupon_reminders.py) in the transaction that plans its reminder, so however often
    this runs, and on however many schedulers, a coupon is reminded once."""
    days = rules.coupon_reminder_days
    if days == 0:
        return 0
    planned = 0
    async with sessions() as reader:
        async for batch in coupons_to_remind(reader, now, days):
            async with sessions.begin() as session:
                claimed = await claim_reminders(session, batch, now)
                ids = await plan(session, COUPON_EXPIRING, SERVICE, _pushes(rules, claimed), now)
            await outbox.enqueue(ids)
            planned += len(ids)
    return planned


def _pushes(rules: ProgrammeRules, coupons: list[DueCoupon]) -> list[PlannedPush]:
    def last_day(due: DueCoupon) -> date:
        # valid_until is exclusive: the last day to use a coupon is the local day before it.
        return (due.valid_until.astimezone(rules.zone) - timedelta(seconds=1)).date()

    pushes = []
    for (member_id, day), group in groupby(coupons, lambda due: (due.member_id, last_day(due))):
        listed = list(group)
        named = [(_name(rules, due.kind), due.code) for due in listed]
        key = f"{COUPON_EXPIRING}:{member_id}:{day:%Y%m%d}:{listed[0].id}"
        pushes.append(PlannedPush(member_id, key, coupon_copy.expiring(named, day)))
    return pushes


def _name(rules: ProgrammeRules, kind: str) -> str:
    found = rules.coupon_kind(kind)
    return found.name if found else kind
