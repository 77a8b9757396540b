"""``[programme.benefits]``: the benefit rules' settings, with the seeds' defaults (DOMAIN.md
"Benefits that arrive"). Marketers may pause a rule or change its amounts in the console; those
changes are stored overrides (``models.benefits.engine``) laid over these defaults.

A rule's ``monthly_budget`` caps what it issues in a calendar month (programme time zone):
coupons when the rule gives coupons, else points (0: no cap). Once spent, the rule issues
nothing more that month and the console says so.
"""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A date a boost applies on: "10-01" (that day every year) or "*-18" (that day every month).
DATE_PATTERN = re.compile(r"^(\*|0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gift(_Settings):
    """What a rule gives one member: a coupon of a configured kind and/or points."""

    coupon: str = ""
    points: int = Field(default=0, ge=0, le=1_000_000)

    @property
    def empty(self) -> bool:
        return not self.coupon and not self.points


class GiftRule(Gift):
    """A rule that gives the same gift to everyone it reaches."""

    enabled: bool = True
    monthly_budget: int = Field(default=0, ge=0)


class RepeatOrderRule(GiftRule):
    """复购赠礼: a gift on the member's ``nth`` paid order (seed 001: the second)."""

    nth: int = Field(default=2, ge=2, le=100)


class OrderNoticeRule(_Settings):
    """The service notice after every paid order: the order, its points, the new balance."""

    enabled: bool = True


class GrowthRule(GiftRule):
    """年度成长奖励: a gift for rising ``levels`` tiers or more in one step."""

    levels: int = Field(default=2, ge=2, le=10)


class ByTierRule(_Settings):
    """A gift that depends on the member's tier (a tier not listed gets nothing)."""

    enabled: bool = True
    monthly_budget: int = Field(default=0, ge=0)
    by_tier: dict[str, Gift] = {}


class SegmentRule(_Settings):
    """A gift on entering a segment, once per entry; ``holdout_percent`` of the entrants get
    nothing (recorded, so the win-back rate can be compared with theirs)."""

    enabled: bool = True
    monthly_budget: int = Field(default=0, ge=0)
    holdout_percent: int = Field(default=10, ge=0, le=90)
    by_segment: dict[str, Gift] = {}


class Boost(_Settings):
    """A dated points multiplier on orders paid on its dates (local), shown in the order's
    ledger entry. ``monthly_budget`` caps the extra points it adds in a month."""

    enabled: bool = True
    name: str = Field(min_length=1, max_length=32)
    dates: list[str] = Field(min_length=1, max_length=400)
    multiplier: Decimal = Field(gt=1, le=10)
    monthly_budget: int = Field(default=0, ge=0)

    @field_validator("dates")
    @classmethod
    def _dates(cls, dates: list[str]) -> list[str]:
        for day in dates:
            if not DATE_PATTERN.match(day):
                raise ValueError(f"date {day!r}: write MM-DD, or *-DD for every month")
        return dates

    def applies(self, month: int, day: int) -> bool:
        """Whether the boost covers the local date ``month``-``day``."""
        return f"{month:02d}-{day:02d}" in self.dates or f"*-{day:02d}" in self.dates


def _days(month: int, first: int, last: int) -> list[str]:
    return [f"{month:02d}-{day:02d}" for day in range(first, last + 1)]


class BenefitsConfig(_Settings):
    """Every benefit rule's settings (defaults from the seeds and DOMAIN.md)."""

    welcome: GiftRule = GiftRule(coupon="welcome_first_order")
    repeat_order: RepeatOrderRule = RepeatOrderRule(points=100)
    order_notice: OrderNoticeRule = OrderNoticeRule()
    tier_upgrade: ByTierRule = ByTierRule(
        by_tier={"silver": Gift(points=200), "gold": Gift(points=500), "diamond": Gift(points=1000)}
    )
    growth: GrowthRule = GrowthRule(points=1000)
    monthly_tier: ByTierRule = ByTierRule(
        by_tier={
            "silver": Gift(coupon="tier_discount_95"),
            "gold": Gift(coupon="tier_discount_90"),
            "diamond": Gift(coupon="tier_discount_85"),
        }
    )
    # The tier table decides: basic members get the birthday month's double points only.
    birthday: ByTierRule = ByTierRule(
        by_tier={
            "silver": Gift(coupon="birthday_gift"),
            "gold": Gift(coupon="birthday_gift_100"),
            "diamond": Gift(coupon="birthday_gift_200"),
        }
    )
    segment_entered: SegmentRule = SegmentRule(
        by_segment={"at_risk": Gift(coupon="full_300_50"), "dormant": Gift(coupon="cash_10")}
    )
    boosts: dict[str, Boost] = {
        "national_day": Boost(name="国庆双倍积分", dates=_days(10, 1, 7), multiplier=Decimal(2)),
        "member_day": Boost(name="会员日双倍积分", dates=["*-18"], multiplier=Decimal(2)),
    }
    anniversary: GiftRule = GiftRule(points=200)
    profile: GiftRule = GiftRule(points=50)
    survey: GiftRule = GiftRule(points=20)

    @field_validator("boosts")
    @classmethod
    def _boost_keys(cls, boosts: dict[str, Boost]) -> dict[str, Boost]:
        for key in boosts:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,23}", key):
                raise ValueError(f"boost {key!r}: name it with lowercase letters, digits and _")
        return boosts

    @model_validator(mode="after")
    def _gifts_give_something(self) -> BenefitsConfig:
        for name in ("welcome", "repeat_order", "growth", "anniversary", "profile", "survey"):
            rule = getattr(self, name)
            if rule.enabled and rule.empty:
                raise ValueError(f"{name}: give a coupon or points, or set enabled = false")
        return self

    def problems(self, coupons: set[str], tiers: set[str], segments: set[str]) -> list[str]:
        """What in these settings names an unknown coupon kind, tier or segment."""
        found = []
        gifts: list[tuple[str, Gift]] = [
            (name, getattr(self, name))
            for name in ("welcome", "repeat_order", "growth", "anniversary", "profile", "survey")
        ]
        for name in ("tier_upgrade", "monthly_tier", "birthday"):
            rule = getattr(self, name)
            for tier, gift in rule.by_tier.items():
                # The shipped gifts name the shipped tiers; a brand with tiers of its own
                # is held only to what it wrote (a default gift for no such tier reaches
                # nobody).
                written = name in self.model_fields_set and "by_tier" in rule.model_fields_set
                if tier not in tiers and written:
                    found.append(f"{name}.by_tier: no tier {tier!r}")
                gifts.append((f"{name}.by_tier.{tier}", gift))
        for segment, gift in self.segment_entered.by_segment.items():
            if segment not in segments:
                found.append(f"segment_entered.by_segment: no segment {segment!r}")
            gifts.append((f"segment_entered.by_segment.{segment}", gift))
        found += [
            f"{where}: no coupon kind {gift.coupon!r}"
            for where, gift in gifts
            if gift.coupon and gift.coupon not in coupons
        ]
        return found
