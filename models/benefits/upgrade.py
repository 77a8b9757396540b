"""Tier upgrade: the gift of the tier reached (once per tier a year), and for rising
``growth.levels`` tiers or more in one step the 年度成长奖励 (once a year). Granted in the
upgrade's transaction; the upgrade push says what was given (no push of their own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.benefits.engine import Granted, active_benefits, grant, granted_payload
from models.rules import ProgrammeRules


async def grant_upgrade_gifts(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    to_tier: str,
    levels: int,
    now: datetime,
) -> list[Granted]:
    """The upgrade gift for ``to_tier`` and, for a jump of ``levels``, the growth reward."""
    config = await active_benefits(session, rules)
    year = f"{now.astimezone(rules.zone):%Y}"
    given: list[Granted] = []
    upgrade = config.tier_upgrade
    gift = upgrade.by_tier.get(to_tier)
    if gift is not None:
        granted = await grant(
            session,
            rules,
            "tier_upgrade",
            upgrade,
            member_id,
            f"{year}:{to_tier}",
            gift,
            reason="升级礼",
            now=now,
            gift_key=to_tier,
            announce=False,
        )
        if granted is not None:
            given.append(granted)
    growth = config.growth
    if levels >= growth.levels:
        granted = await grant(
            session,
            rules,
            "growth",
            growth,
            member_id,
            year,
            growth,
            reason="年度成长奖励",
            now=now,
            announce=False,
        )
        if granted is not None:
            given.append(granted)
    return given


def upgrade_gifts(
    session: AsyncSession, rules: ProgrammeRules, now: datetime
) -> Callable[[int, str, int], Awaitable[list[dict[str, Any]]]]:
    """The ``gifts`` callback of ``models.tiers.upgrade_if_earned``: grants the upgrade's gifts
    in ``session`` and returns them as the upgrade event records them."""

    async def given(member_id: int, tier: str, levels: int) -> list[dict[str, Any]]:
        granted = await grant_upgrade_gifts(session, rules, member_id, tier, levels, now)
        return [granted_payload(g) for g in granted]

    return given
