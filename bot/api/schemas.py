"""Request and response bodies of the JSON API (validated strictly: no extra fields, no
strings where numbers belong)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models import orders

Ref = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w\-.:]+$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Out):
    code: str
    message: str
    field: str | None = None


class ErrorOut(_Out):
    error: ErrorDetail


class MemberIn(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?\d{5,15}$")] | None = None
    birthday: date | None = None
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = Field(
        default=None, max_length=50
    )

    @model_validator(mode="after")
    def _birthday_in_the_past(self) -> MemberIn:
        if self.birthday is not None and not date(1900, 1, 1) <= self.birthday <= date.today():
            raise ValueError("birthday must be between 1900-01-01 and today")
        return self


class ExpiringOut(_Out):
    points: int
    expires_at: datetime


class TierOut(_Out):
    code: str
    name: str
    discount_rate: float = Field(
        description="share of the price the member pays at the till: 0.95 for 9.5折, 1 for none"
    )
    discount_label: str = Field(description="the discount as members read it, e.g. 9.5折 or 无")
    points_multiplier: float = Field(
        description="points per yuan the tier earns, e.g. 1.2 (times the birthday multiplier in "
        "the member's birthday month)"
    )
    since: datetime | None
    next_tier: str | None
    orders_needed: int | None
    spend_needed_fen: int | None


class MemberOut(_Out):
    openid: str | None
    customer_ref: str | None
    name: str | None
    phone: str | None
    birthday: date | None
    tags: list[str]
    subscribed: bool
    balance: int
    expiring_30_days: list[ExpiringOut]
    tier: TierOut
    segment: str | None


class LedgerEntryOut(_Out):
    id: int
    kind: str
    points: int
    balance_after: int
    reason: str
    created_at: datetime


class LedgerPageOut(_Out):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


class LedgerQuery(_In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # query strings are text

    limit: int = Field(default=50, ge=1, le=200)
    cursor: Annotated[str, StringConstraints(pattern=r"^\d{1,18}$")] | None = None


# What a till scans from the member centre (models/member_codes.py): 18 digits from 98.
MemberCode = Annotated[str, StringConstraints(pattern=r"^98\d{16}$")]


class _OrderFields(_In):
    order_id: Ref
    amount_fen: int = Field(gt=0)
    paid_at: AwareDatetime
    channel: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    category: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    def for_member(self, member_id: int) -> orders.OrderIn:
        """The order as the domain records it, for the member it was matched to."""
        return orders.OrderIn(
            shop_order_id=self.order_id,
            member_id=member_id,
            amount_fen=self.amount_fen,
            paid_at=self.paid_at,
            channel=self.channel,
            category=self.category,
        )


class OrderIn(_OrderFields):
    """An order reported through the API: the member by openid, customer_ref, or the member
    code the till scanned."""

    openid: Ref | None = None
    customer_ref: Ref | None = None
    member_code: MemberCode | None = None

    @model_validator(mode="after")
    def _one_member_reference(self) -> OrderIn:
        given = [self.openid, self.customer_ref, self.member_code]
        if sum(ref is not None for ref in given) != 1:
            raise ValueError("give exactly one of openid, customer_ref and member_code")
        return self


class OrderRowIn(_OrderFields):
    """An order in an imported file (bot/importer.py): by openid or customer_ref."""

    openid: Ref | None = None
    customer_ref: Ref | None = None

    @model_validator(mode="after")
    def _one_member_reference(self) -> OrderRowIn:
        if (self.openid is None) == (self.customer_ref is None):
            raise ValueError("give exactly one of openid and customer_ref")
        return self


class UpgradeOut(_Out):
    from_tier: str
    to_tier: str


class OrderOut(_Out):
    order_id: str
    points_earned: int
    balance: int
    tier: str
    upgrade: UpgradeOut | None


class RefundIn(_In):
    refund_id: Ref
    amount_fen: int | None = Field(default=None, gt=0)


class RefundOut(_Out):
    refund_id: str
    order_id: str
    amount_fen: int
    points_reversed: int
    points_unrecovered: int
    points_expired: int
    balance: int


class PointsIn(_In):
    kind: Literal["redeem", "adjust"]
    points: int
    reason: Text
    idempotency_key: Annotated[str, StringConstraints(min_length=8, max_length=100)]

    @model_validator(mode="after")
    def _sensible(self) -> PointsIn:
        if self.points == 0:
            raise ValueError("points must not be 0")
        if self.kind == "redeem" and self.points > 0:
            raise ValueError("a redemption takes points: give a negative number")
        return self


class PointsOut(_Out):
    entry_id: int
    points: int
    balance: int


class BindingCodeIn(_In):
    customer_ref: Ref
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?\d{5,15}$")] | None = None


class BindingCodeOut(_Out):
    code: str
    customer_ref: str
    expires_at: datetime


class CouponIssueIn(_In):
    openid: Ref
    kind: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    reason: Text
    idempotency_key: Annotated[str, StringConstraints(min_length=8, max_length=100)]
    valid_days: int | None = Field(default=None, ge=1, le=3650)


class CouponOut(_Out):
    code: str
    kind: str
    status: str
    valid_from: datetime
    valid_until: datetime
    redeemed_at: datetime | None
    order_id: str | None


class MemberCodeIn(_In):
    code: MemberCode


class MemberCodeCouponOut(_Out):
    code: str
    kind: str
    name: str
    valid_until: datetime


class MemberCodeOut(_Out):
    openid: str
    customer_ref: str | None
    tier: str
    tier_name: str
    discount: str = Field(description="the tier's discount as the programme words it, e.g. 9.5折")
    discount_rate: str | None = Field(
        description="the price paid as a share of the list price (9.5折 → 0.95; none → 1)"
    )
    points_multiplier: str
    balance: int
    coupons: list[MemberCodeCouponOut]
    order_until: datetime = Field(description="an order may carry this code until then")


class CouponRedeemIn(_In):
    order_id: Ref
    openid: Ref | None = None
    order_amount_fen: int | None = Field(
        default=None,
        gt=0,
        le=10_000_000_000,
        description="the order's amount in fen; required for threshold (满减) coupons",
    )


class CouponRefusalDetail(ErrorDetail):
    # coupon_below_threshold only: the amount the order must reach.
    threshold_fen: int | None = None


class CouponRefusalOut(_Out):
    """Why a coupon cannot be redeemed (409): ``coupon_<reason>``, e.g. ``coupon_used``,
    ``coupon_below_threshold`` (with ``threshold_fen``), ``coupon_not_first_order``,
    ``coupon_tier_not_eligible``."""

    error: CouponRefusalDetail


class SatisfactionQuery(_In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # query strings are text

    from_: date = Field(
        alias="from", description="first local day, inclusive (2000-01-01 to 2999-12-31)"
    )
    to: date = Field(description="last local day, inclusive (2000-01-01 to 2999-12-31)")
    group_by: Literal["tier", "segment", "month"] | None = None

    @field_validator("from_", "to")
    @classmethod
    def _plausible(cls, day: date) -> date:
        # Days at the ends of the calendar have no UTC bounds (year 1 at +08:00 is year 0).
        if not date(2000, 1, 1) <= day <= date(2999, 12, 31):
            raise ValueError("must be between 2000-01-01 and 2999-12-31")
        return day

    @field_validator("to")
    @classmethod
    def _after_from(cls, to: date, info: ValidationInfo) -> date:
        start = info.data.get("from_")
        if start is not None and to < start:
            raise ValueError("is before from")
        if start is not None and (to - start).days > 3 * 366:
            raise ValueError("the range may span at most three years")
        return to


class CsatOut(_Out):
    count: int
    satisfied: int = Field(description="answers of 4 or 5")
    percent: float | None = Field(description="satisfied / count, in %; null without answers")


class NpsOut(_Out):
    count: int
    promoters: int = Field(description="answers of 9 or 10")
    detractors: int = Field(description="answers of 0 to 6")
    score: float | None = Field(description="% promoters − % detractors; null without answers")


class SatisfactionGroupOut(_Out):
    group: str = Field(description="tier code, segment, YYYY-MM, or 'all'")
    csat: CsatOut
    nps: NpsOut


class SatisfactionOut(_Out):
    from_: date = Field(serialization_alias="from")
    to: date
    group_by: str | None
    groups: list[SatisfactionGroupOut]
