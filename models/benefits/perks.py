"""What a tier offers, derived from the settings and rules that give it: the member's 权益 and
the upgrade push list these facts (messages/benefit_copy.py words them), so they promise only
what something issues or applies. A paused rule's perk is not listed.

Customer service's priority lane (专属客服, ``[console] priority_tiers``) is passed in by the
caller as the tiers it serves first; the catalogue's early access (新品优先购) is shown with
the items themselves, not promised here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from models.benefit_settings import BenefitsConfig, Gift
from models.rules import ProgrammeRules


@dataclass(frozen=True, slots=True)
class Perk:
    """One thing a tier gives: ``kind`` names its wording; ``source`` is the rule code or
    setting behind it; ``value`` is what the wording shows (a discount, a multiplier, a gift's
    coupon name and points)."""

    kind: str
    source: str
    value: str = ""
    points: int = 0


def _multiplier(value: Decimal) -> str:
    return f"{value.normalize():f}"


def gift_perk(rules: ProgrammeRules, kind: str, source: str, gift: Gift) -> Perk:
    """A gift as a perk: the coupon kind's name and the points."""
    coupon = rules.coupon_kind(gift.coupon) if gift.coupon else None
    return Perk(kind, source, coupon.name if coupon else "", gift.points)


def tier_perks(
    rules: ProgrammeRules, config: BenefitsConfig, code: str, lanes: Collection[str] = ()
) -> list[Perk]:
    """Everything tier ``code`` gives, in the order a member reads it; ``lanes``: the tiers
    customer service serves first (their 专属客服)."""
    tier = rules.tier(code)
    perks: list[Perk] = []
    if tier.discount and tier.discount != "无":
        perks.append(Perk("discount", "setting:tiers.discount", tier.discount))
    if tier.multiplier != 1:
        perks.append(Perk("multiplier", "setting:tiers.multiplier", _multiplier(tier.multiplier)))
    else:
        perks.append(Perk("points", "setting:tiers.multiplier"))
    monthly = config.monthly_tier
    if monthly.enabled and (gift := monthly.by_tier.get(code)) and not gift.empty:
        perks.append(gift_perk(rules, "monthly", "monthly_tier", gift))
    birthday_multiplier = rules.points.birthday_multiplier
    if birthday_multiplier > 1:
        perks.append(
            Perk(
                "birthday_points",
                "setting:points.birthday_multiplier",
                _multiplier(birthday_multiplier),
            )
        )
    birthday = config.birthday
    if birthday.enabled and (gift := birthday.by_tier.get(code)) and not gift.empty:
        perks.append(gift_perk(rules, "birthday_gift", "birthday", gift))
    if code in rules.birthday_gifts.tiers:
        perks.append(Perk("custom_gift", "setting:birthday_gifts", rules.birthday_gifts.name))
    if code in lanes:
        perks.append(Perk("service_lane", "setting:console.priority_tiers"))
    return perks


def upgrade_perk(rules: ProgrammeRules, config: BenefitsConfig, code: str) -> Perk | None:
    """The gift for reaching tier ``code`` (None: none, or the rule is paused)."""
    upgrade = config.tier_upgrade
    gift = upgrade.by_tier.get(code)
    if not upgrade.enabled or gift is None or gift.empty:
        return None
    return gift_perk(rules, "upgrade_gift", "tier_upgrade", gift)


def boost_perks(config: BenefitsConfig) -> list[Perk]:
    """The dated boosts in force for everyone (国庆 double points, 会员日)."""
    return [
        Perk("boost", f"boost:{key}", boost.name)
        for key, boost in config.boosts.items()
        if boost.enabled
    ]
