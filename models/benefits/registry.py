"""Every benefit rule as the console shows and changes it: status, gifts, this month's issue
against the budget, the holdout, and marketers' changes (stored overrides, audited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import dialect_insert
from models.benefit_settings import Boost, ByTierRule, Gift, OrderNoticeRule, SegmentRule
from models.benefits.engine import (
    active_benefits,
    budget_unit,
    month_bounds,
    month_of,
    overrides,
    rule_codes,
    rule_settings,
    with_settings,
)
from models.benefits.tables import BenefitGrant, BenefitOverride
from models.rules import ProgrammeRules
from models.staff import audit

# Set-based rules run by a job; the others are triggered by what a member does.
SCHEDULED = {
    "monthly_tier": "monthly-tier-benefits",
    "birthday": "birthdays",
    "segment_entered": "winback",
    "anniversary": "anniversaries",
    "profile": "behaviour-points",
    "survey": "behaviour-points",
}


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One rule on the console's 礼遇规则 page."""

    code: str
    settings: BaseModel
    enabled: bool
    gifts: dict[str, Gift]  # "" for a rule with one gift; else tier or segment codes
    unit: str  # what the budget counts: coupons or points
    budget: int  # 0: none
    issued: int  # this month (coupons or points, holdouts apart)
    members: int  # members granted this month
    held_out: int  # members held out this month
    overridden: bool
    job: str | None

    @property
    def budget_spent(self) -> bool:
        """Whether this month's budget cannot pay for one more gift."""
        if not self.budget:
            return False
        smallest = min(
            (1 if self.unit == "coupons" else g.points for g in self.gifts.values() if not g.empty),
            default=1,
        )
        return self.budget - self.issued < max(smallest, 1)


def gifts_of(settings: BaseModel) -> dict[str, Gift]:
    """The gifts a rule gives, by tier or segment ("" for its one gift)."""
    if isinstance(settings, ByTierRule):
        return dict(settings.by_tier)
    if isinstance(settings, SegmentRule):
        return dict(settings.by_segment)
    if isinstance(settings, Gift):
        return {"": Gift(coupon=settings.coupon, points=settings.points)}
    return {}


async def rule_rows(session: AsyncSession, rules: ProgrammeRules, now: datetime) -> list[RuleRow]:
    """Every rule with this month's figures (one grouped statement over the month's grants)."""
    config = await active_benefits(session, rules)
    stored = await overrides(session)
    start, end = month_bounds(rules, month_of(rules, now))
    g = BenefitGrant.__table__.c
    given = g.holdout.is_(False)
    rows = await session.execute(
        select(
            g.rule,
            func.count(case((given, 1))),
            func.count(case((g.holdout.is_(True), 1))),
            func.count(case((given & g.coupon_kind.is_not(None), 1))),
            func.coalesce(func.sum(case((given, g.points), else_=0)), 0),
        )
        .where(g.created_at >= start, g.created_at < end)
        .group_by(g.rule)
    )
    figures = {rule: (int(m), int(h), int(c), int(p)) for rule, m, h, c, p in rows}
    listed = []
    for code in rule_codes(config):
        settings = rule_settings(config, code)
        unit = budget_unit(settings)
        members, held, coupons, points = figures.get(code, (0, 0, 0, 0))
        listed.append(
            RuleRow(
                code=code,
                settings=settings,
                enabled=bool(getattr(settings, "enabled", False)),
                gifts=gifts_of(settings),
                unit=unit,
                budget=int(getattr(settings, "monthly_budget", 0)),
                issued=coupons if unit == "coupons" else points,
                members=members,
                held_out=held,
                overridden=code in stored,
                job=SCHEDULED.get(code),
            )
        )
    return listed


def changes_from_form(settings: BaseModel, form: dict[str, str]) -> dict[str, Any]:
    """The settings a console form sets for a rule: its budget, its gift(s) as
    ``gift.<key>.coupon`` / ``gift.<key>.points``, a boost's multiplier, a segment rule's
    holdout share, the Nth order. Blank fields keep their value; ValueError on a bad number."""
    changes: dict[str, Any] = {}

    def number(name: str) -> int | None:
        raw = form.get(name, "").strip()
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}: give a whole number") from None

    for name in ("monthly_budget", "holdout_percent", "nth", "levels"):
        if name in type(settings).model_fields and (value := number(name)) is not None:
            changes[name] = value
    if isinstance(settings, Boost) and form.get("multiplier", "").strip():
        changes["multiplier"] = form["multiplier"].strip()
    gifts = gifts_of(settings)
    changed: dict[str, dict[str, Any]] = {}
    for key, gift in gifts.items():
        coupon = form.get(f"gift.{key}.coupon")
        points = number(f"gift.{key}.points")
        new = gift.model_dump()
        if coupon is not None:
            new["coupon"] = coupon.strip()
        if points is not None:
            new["points"] = points
        if new != gift.model_dump():
            changed[key] = new
    if changed:
        if isinstance(settings, ByTierRule):
            changes["by_tier"] = {k: g.model_dump() for k, g in gifts.items()} | changed
        elif isinstance(settings, SegmentRule):
            changes["by_segment"] = {k: g.model_dump() for k, g in gifts.items()} | changed
        else:
            changes |= changed[""]
    if isinstance(settings, OrderNoticeRule):
        changes = {}
    return changes


async def change_rule(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    changes: dict[str, Any],
    staff_id: int | None,
    now: datetime,
) -> None:
    """Store a marketer's change to rule ``code`` (over the configured settings) and audit
    it, in the caller's transaction. KeyError for an unknown rule; ValueError naming what is
    wrong (nothing is written)."""
    rule_settings(rules.benefits, code)  # KeyError for a rule the configuration lacks
    stored = await session.get(BenefitOverride, code, with_for_update=True)
    merged = (dict(stored.settings) if stored else {}) | changes
    with_settings(rules, rules.benefits, code, merged)  # ValueError when it does not hold
    before = rule_settings(await active_benefits(session, rules), code).model_dump(mode="json")
    values = {"settings": merged, "updated_by": staff_id, "updated_at": now}
    await session.execute(
        dialect_insert(session)(BenefitOverride)
        .values(rule=code, **values)
        .on_conflict_do_update(index_elements=["rule"], set_=values)
    )
    await audit(
        session,
        staff_id,
        "benefit_rule_changed",
        now,
        target=code,
        before=before,
        changes=_jsonable(changes),
    )


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if not isinstance(v, int | str | bool | dict | list) else v)
        for k, v in changes.items()
    }
