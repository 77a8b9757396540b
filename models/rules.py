"""The programme's rules, as settings (``config.example.toml`` carries every default).

Defaults follow DOMAIN.md. They live here rather than in bot/config.py so the domain
operations can take them without importing the service layer.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.benefit_settings import BenefitsConfig


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierRule(_Rules):
    """A tier: reached by purchases or spend over the trailing window (either suffices)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    name: str
    min_orders: int = Field(ge=0)
    min_spend_fen: int | None = Field(default=None, ge=0)
    # Also reached by being in the top N% of spenders at the last re-evaluation.
    top_spend_percent: float | None = Field(default=None, gt=0, le=100)
    multiplier: Decimal = Field(gt=0, le=100)
    # The label members read ("9.5折", "无") and the rate a till applies (0.95: pay 95%).
    # Without a rate, a label of the form "N折" gives it (9.5折 → 0.95, 95折 → 0.95) and
    # "无" gives 1; a rate that contradicts such a label is refused.
    discount: str = "无"
    discount_rate: Decimal | None = Field(default=None, gt=0, le=1)
    # Gone: what a tier offers is derived from the benefit rules (models/benefits/perks.py),
    # so the copy promises only what something issues. Kept only to say so plainly.
    benefits: list[str] = []

    @field_validator("benefits")
    @classmethod
    def _no_free_text_benefits(cls, benefits: list[str]) -> list[str]:
        if benefits:
            raise ValueError(
                "tiers[].benefits is no longer read: a tier's benefits are derived from "
                "[programme.benefits] (the rules that issue them); remove the line"
            )
        return benefits

    @model_validator(mode="after")
    def _rate_matches_label(self) -> TierRule:
        from_label = _rate_of_label(self.discount)
        if self.discount_rate is None:
            if from_label is None:
                raise ValueError(
                    f"tier {self.code}: set discount_rate (e.g. 0.95) for the label "
                    f"{self.discount!r}"
                )
            object.__setattr__(self, "discount_rate", from_label)
        elif from_label is not None and from_label != self.discount_rate:
            raise ValueError(
                f"tier {self.code}: discount_rate {self.discount_rate} contradicts the label "
                f"{self.discount!r} ({from_label})"
            )
        return self

    @property
    def rate(self) -> Decimal:
        """The share of the price the member pays (1 when the tier has no discount)."""
        assert self.discount_rate is not None  # set by the validator
        return self.discount_rate


def _rate_of_label(label: str) -> Decimal | None:
    """The rate a Chinese discount label states: "9.5折" and "95折" are 0.95, "无" is 1."""
    text = label.strip()
    if text in ("", "无"):
        return Decimal(1)
    match = re.fullmatch(r"(\d{1,2}(?:\.\d{1,2})?)\s*折", text)
    if match is None:
        return None
    number = Decimal(match.group(1))
    rate = number / 10 if number <= 10 else number / 100
    return rate.normalize() if 0 < rate <= 1 else None


DEFAULT_TIERS = [
    TierRule(
        code="basic",
        name="普通会员",
        min_orders=0,
        multiplier=Decimal("1.0"),
    ),
    TierRule(
        code="silver",
        name="银卡会员",
        min_orders=4,
        min_spend_fen=200_000,
        multiplier=Decimal("1.2"),
        discount="9.5折",
    ),
    TierRule(
        code="gold",
        name="金卡会员",
        min_orders=7,
        min_spend_fen=500_000,
        multiplier=Decimal("1.5"),
        discount="9折",
    ),
    TierRule(
        code="diamond",
        name="钻石会员",
        min_orders=11,
        top_spend_percent=10,
        multiplier=Decimal("2.0"),
        discount="8.5折",
    ),
]


class PointsRules(_Rules):
    # "rolling": each lot lasts expiry_months; "end_of_next_year": until 31 Dec next year.
    expiry_policy: Literal["rolling", "end_of_next_year"] = "rolling"
    expiry_months: int = Field(default=12, ge=1, le=120)
    birthday_multiplier: Decimal = Field(default=Decimal("2"), ge=1, le=10)
    # A single order may not credit more than this (a guard against absurd amounts).
    max_order_fen: int = Field(default=100_000_000, gt=0)
    max_adjustment: int = Field(default=1_000_000, gt=0)
    # Members are reminded this many days before points expire (one reminder per threshold).
    expiry_reminder_days: list[int] = Field(default=[30, 7], min_length=0, max_length=5)


class SegmentRules(_Rules):
    """RFM thresholds (DOMAIN.md); money in fen, windows in days."""

    core_recent_days: int = 30
    core_min_orders_12m: int = 24
    core_min_spend_fen: int = 10_000_000
    important_recent_days: int = 60
    important_min_orders_12m: int = 12
    important_min_spend_fen: int = 5_000_000
    potential_registered_days: int = 90
    potential_min_orders: int = 2
    potential_max_spend_fen: int = 100_000
    at_risk_idle_days: int = 60
    at_risk_min_orders: int = 3
    dormant_idle_days: int = 90
    dormant_max_orders: int = 1


class CouponKind(_Rules):
    """A kind of coupon: 满减 (threshold), 折扣 (percent) or 无门槛 (cash), and the conditions
    a redemption checks (models/coupons.py): the order's amount reaches ``threshold_fen``
    (threshold kinds), it is the member's first paid order (``first_order_only``), the member
    is in one of ``tiers`` (empty: any tier)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: str
    type: Literal["threshold", "percent", "cash"]
    discount_fen: int = Field(default=0, ge=0)
    threshold_fen: int = Field(default=0, ge=0)
    percent_off: int = Field(default=0, ge=0, le=100)
    valid_days: int = Field(default=30, ge=1, le=3650)
    first_order_only: bool = False
    tiers: list[str] = []

    @model_validator(mode="after")
    def _threshold_has_one(self) -> CouponKind:
        if self.type == "threshold" and self.threshold_fen < 1:
            raise ValueError(f"coupon kind {self.code}: a threshold coupon needs threshold_fen")
        return self


DEFAULT_COUPONS = [
    CouponKind(
        code="full_300_50",
        name="满300减50",
        type="threshold",
        threshold_fen=30_000,
        discount_fen=5_000,
        valid_days=30,
    ),
    CouponKind(code="cash_10", name="无门槛10元券", type="cash", discount_fen=1_000, valid_days=30),
    CouponKind(
        code="newcomer_20", name="新人立减20元", type="cash", discount_fen=2_000, valid_days=30
    ),
    CouponKind(
        code="birthday_gift", name="生日礼券", type="cash", discount_fen=5_000, valid_days=30
    ),
    CouponKind(
        code="tier_discount_95", name="会员9.5折券", type="percent", percent_off=5, valid_days=30
    ),
    # Issued by the benefit rules (models/benefits/config.py): welcome (新人首单券, only on the
    # member's first paid order), monthly tier, birthday.
    CouponKind(
        code="welcome_first_order",
        name="新人首单券",
        type="cash",
        discount_fen=2_000,
        valid_days=30,
        first_order_only=True,
    ),
    CouponKind(
        code="tier_discount_90", name="会员9折券", type="percent", percent_off=10, valid_days=30
    ),
    CouponKind(
        code="tier_discount_85", name="会员8.5折券", type="percent", percent_off=15, valid_days=30
    ),
    CouponKind(
        code="birthday_gift_100",
        name="生日礼券100元",
        type="cash",
        discount_fen=10_000,
        valid_days=30,
    ),
    CouponKind(
        code="birthday_gift_200",
        name="生日礼券200元",
        type="cash",
        discount_fen=20_000,
        valid_days=30,
    ),
]


class ReferralRules(_Rules):
    """老带新: who gets what when a referred friend's first order stands, and the limits."""

    # Days after the friend's first order before both are rewarded (0: at once, and clawed
    # back should that order be refunded in full).
    return_window_days: int = Field(default=7, ge=0, le=90)
    referrer_points: int = Field(default=200, ge=0, le=1_000_000)
    # The newcomer's reward: a coupon kind ("" for none) and/or points.
    newcomer_coupon: str = "newcomer_20"
    newcomer_points: int = Field(default=0, ge=0, le=1_000_000)
    # Rewards per referrer per local day; referrals beyond it are recorded as capped.
    daily_reward_cap: int = Field(default=10, ge=1, le=10_000)
    # 推荐之星: this many rewarded referrals in a calendar quarter earn the badge and bonus.
    star_threshold: int = Field(default=5, ge=1, le=1000)
    star_bonus_points: int = Field(default=500, ge=0, le=1_000_000)
    # A follower who scans a friend's code this soon after first following still counts as
    # referred (they followed by search a moment before scanning).
    scan_grace_hours: int = Field(default=24, ge=0, le=24 * 7)
    # Temporary QR codes live at most 30 days on WeChat; a fresh one is made when fewer than
    # qr_renew_days remain, so a shared code stays valid a while.
    qr_days: int = Field(default=30, ge=2, le=30)
    qr_renew_days: int = Field(default=3, ge=1, le=29)


class RatingRules(_Rules):
    """满意度: when the CSAT and NPS questions are asked and what follows an answer."""

    after_order_days: float = Field(default=3, ge=0, le=60)
    # After a CSAT score: "comment" asks for a comment, "nps" asks the NPS question, "" nothing.
    csat_follow_up: Literal["comment", "nps", ""] = "comment"
    # Share of subscribed members asked the NPS question each month (a stable sample).
    nps_sample_percent: float = Field(default=5, ge=0, le=100)
    question_hours: int = Field(default=24, ge=1, le=24 * 7)
    # Scores at or below these open a follow-up for customer service.
    csat_low: int = Field(default=2, ge=1, le=5)
    nps_low: int = Field(default=6, ge=0, le=10)


class CallbackRules(_Rules):
    """Customer service's work list (models/follow_ups.py): when a low rating's follow-up is
    due, and which members the monthly job puts on it to be called (seed 002: 流失风险 members
    get 电话回访; seed 001: 高客单价客户每季度1次电话回访). Only members with a phone number
    are listed for a call. Money in fen, net of refunds over the last ``spend_months``."""

    low_rating_due_hours: int = Field(default=24, ge=1, le=24 * 30)
    spend_months: int = Field(default=12, ge=1, le=36)
    # 流失风险 members who spent at least this much: one call a month (0: no such calls).
    at_risk_min_spend_fen: int = Field(default=500_000, ge=0)
    at_risk_due_days: int = Field(default=7, ge=1, le=31)
    # High-ticket members (average order at least this much, at least min_orders orders):
    # one call a quarter (0: no such calls).
    high_ticket_min_aov_fen: int = Field(default=100_000, ge=0)
    high_ticket_min_orders: int = Field(default=2, ge=1, le=1000)
    high_ticket_due_days: int = Field(default=14, ge=1, le=92)


class BirthdayGiftRules(_Rules):
    """Who gets a physical birthday gift, shipped by the brand (seed 002: 生日定制礼遇 for the
    core segment; DOMAIN.md: 钻石会员's 生日定制礼). The console tracks its fulfilment."""

    name: str = Field(default="生日定制礼", min_length=1, max_length=32)
    tiers: list[str] = ["diamond"]
    segments: list[str] = ["core"]


class Target(_Rules):
    """A figure's target: at least or at most a value, or a change on the same month a year
    before (``change_percent``: -50 means half of last year's figure). None of them: no target."""

    at_least: float | None = None
    at_most: float | None = None
    change_percent: float | None = Field(default=None, gt=-100, le=1000)

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if sum(v is not None for v in (self.at_least, self.at_most, self.change_percent)) > 1:
            raise ValueError("give one of at_least, at_most, change_percent")
        return self


class ProgrammeTargets(_Rules):
    """The targets the programme is judged on (DOMAIN.md "Figures", the seeds' values), in the
    figure's unit: percent for rates, NPS points, fen for money. models/figures.py defines
    every figure; the thresholds below shape three of them."""

    repurchase_12m: Target = Target(at_least=75)
    first_repeat_90d: Target = Target(at_least=40)
    churn: Target = Target(change_percent=-50)
    aov: Target = Target(change_percent=55)
    ltv_12m: Target = Target(change_percent=80)
    high_value_share: Target = Target(change_percent=40)
    benefit_use: Target = Target(at_least=70)
    participation: Target = Target(at_least=85)
    winback: Target = Target(at_least=25)
    wakeup: Target = Target(at_least=15)
    csat: Target = Target(at_least=98)
    nps: Target = Target(at_least=50)
    # The seeds give the times (1 hour, 24 hours), not the share: 95% is ours.
    pickup_in_target: Target = Target(at_least=95)
    resolved_24h: Target = Target(at_least=95)
    # Cases (工单) opened in the month and closed by their due time.
    cases_in_due: Target = Target(at_least=95)
    # A high-value member spent at least this much (net) in 12 months (seed 002: ¥5,000).
    high_value_spend_fen: int = Field(default=500_000, ge=1)
    # Service levels: picked up (first reply) within pickup_minutes of joining the queue,
    # resolved (closed or handed back by an agent) within resolve_hours.
    pickup_minutes: int = Field(default=60, ge=1, le=24 * 60)
    resolve_hours: int = Field(default=24, ge=1, le=24 * 30)

    def target(self, figure: str) -> Target | None:
        """The target set for ``figure``, or None when it has none."""
        found = getattr(self, figure, None)
        if not isinstance(found, Target) or found == Target():
            return None
        return found


class ProgrammeRules(_Rules):
    """Everything the domain operations need to know about the programme."""

    # How the programme names itself to members (the referral page's heading).
    brand_name: str = Field(default="会员俱乐部", min_length=1, max_length=32)
    timezone: str = "Asia/Shanghai"
    tier_window_months: int = Field(default=12, ge=1, le=36)
    tiers: list[TierRule] = DEFAULT_TIERS
    points: PointsRules = PointsRules()
    segments: SegmentRules = SegmentRules()
    coupons: list[CouponKind] = DEFAULT_COUPONS
    # Unused coupons are reminded once, when they expire within this many days (0: never).
    coupon_reminder_days: int = Field(default=3, ge=0, le=30)
    binding_code_hours: int = Field(default=24, ge=1, le=24 * 30)
    # Statutory holidays greeted on their first day (names as the `holidays` package gives
    # them in zh_CN), and the brand's own days ("MM-DD" = name).
    holiday_greetings: list[str] = ["元旦", "春节", "劳动节", "端午节", "中秋节", "国庆节"]
    brand_days: dict[str, str] = {"06-18": "618年中大促", "11-11": "双十一"}
    birthday_gifts: BirthdayGiftRules = BirthdayGiftRules()
    referrals: ReferralRules = ReferralRules()
    ratings: RatingRules = RatingRules()
    callbacks: CallbackRules = CallbackRules()
    # 礼遇规则: what is issued when (welcome, orders, upgrades, monthly, birthday, segments…).
    benefits: BenefitsConfig = BenefitsConfig()
    targets: ProgrammeTargets = ProgrammeTargets()
    # Where the scheduler keeps each month's 《效果跟踪表》 (HTML and CSV; never deleted).
    reports_folder: str = Field(default="data/reports", min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _replaced_settings(cls, data: object) -> object:
        # Settings the benefit rules replaced: a clear error rather than "extra input".
        replaced = {
            "birthday_coupon": "[programme.benefits.birthday] by_tier (a coupon per tier)",
            "winback_segments": "[programme.benefits.segment_entered] by_segment",
        }
        if isinstance(data, dict):
            for name, instead in replaced.items():
                if name in data:
                    raise ValueError(f"{name} was replaced by {instead}; remove {name}")
        return data

    @model_validator(mode="after")
    def _tiers_ascend(self) -> ProgrammeRules:
        if not self.tiers or self.tiers[0].min_orders != 0:
            raise ValueError("tiers: the first tier must need 0 orders (everyone's tier)")
        orders = [tier.min_orders for tier in self.tiers]
        if orders != sorted(orders) or len({t.code for t in self.tiers}) != len(self.tiers):
            raise ValueError("tiers: list them lowest first, with distinct codes")
        problems = self.benefits.problems(
            {k.code for k in self.coupons},
            {t.code for t in self.tiers},
            {"core", "important", "potential", "at_risk", "dormant", "other"},
        )
        if problems:
            raise ValueError("benefits: " + "; ".join(problems))
        newcomer = self.referrals.newcomer_coupon
        if newcomer and self.coupon_kind(newcomer) is None:
            raise ValueError(f"referrals.newcomer_coupon: no coupon kind {newcomer!r}")
        tier_codes = {tier.code for tier in self.tiers}
        for kind in self.coupons:
            if unknown := sorted(set(kind.tiers) - tier_codes):
                raise ValueError(f"coupon kind {kind.code}: no tier {', '.join(unknown)}")
        if self.referrals.qr_renew_days >= self.referrals.qr_days:
            raise ValueError("referrals: qr_renew_days must be less than qr_days")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def tier(self, code: str) -> TierRule:
        """The rule for tier ``code`` (the lowest tier for an unknown code)."""
        return next((t for t in self.tiers if t.code == code), self.tiers[0])

    def coupon_kind(self, code: str) -> CouponKind | None:
        return next((k for k in self.coupons if k.code == code), None)
