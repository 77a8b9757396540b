"""Welcome (新人礼): on following the account or binding a receipt, the 新人首单 coupon, once
per member, and only to a member with no paid order yet (it is for the first one)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefits.engine import Granted, active_benefits, grant
from models.orders import Order
from models.rules import ProgrammeRules


async def grant_welcome(
    session: AsyncSession, rules: ProgrammeRules, member_id: int, now: datetime
) -> Granted | None:
    """The welcome gift, in the caller's transaction; None when the rule is paused, its
    budget spent, the member had it before or has ordered already. The caller's reply says
    what was given (no push: the member is in the chat)."""
    config = await active_benefits(session, rules)
    settings = config.welcome
    if not settings.enabled:
        return None
    if await session.scalar(select(exists().where(Order.member_id == member_id))):
        return None
    return await grant(
        session,
        rules,
        "welcome",
        settings,
        member_id,
        "once",
        settings,
        reason="新人礼",
        now=now,
        announce=False,
    )
