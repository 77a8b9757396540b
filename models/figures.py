"""The programme's figures (DOMAIN.md "Figures the programme is judged on"), each defined once
here, by month, overall and by tier and segment, against the targets in ``[programme.targets]``.

README "Programme figures" writes out the formula of each. Common ground:

- a month is a local calendar month in the programme's zone; a month still running ends now;
- a purchase is an order not fully refunded (``amount_fen - refunded_fen > 0``), and money is
  net of refunds: the same rule as tiers and segments;
- a figure is a sum over groups of (numerator, denominator); a rate is 100 × numerator /
  denominator, NPS the same over promoters minus detractors, an average (fen) numerator /
  denominator, a count the numerator alone;
- by tier and by segment means the member's tier and segment now (the report of last month,
  made on the 1st, sees them as they stood at its end); ratings keep the tier and segment the
  member had when answering.

Everything is set-based SQL: figures bucketed by month (orders, coupons, points, ratings,
conversations, growth) are one grouped statement over the whole trend; figures over trailing
windows (repurchase, churn, spend per member, high-value share, win-back and 唤醒, first
repeat) are one statement per month over each member's purchases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from dateutil.relativedelta import relativedelta
from sqlalchemy import and_, case, exists, func, literal, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import local_period
from models.binding import BindingCode
from models.campaigns import HOLDOUT, CampaignMember, CampaignRun
from models.conversations import Conversation
from models.coupons import Coupon
from models.deliveries import Delivery
from models.ledger import LedgerEntry
from models.members import Member
from models.orders import Order
from models.ratings import CSAT, NPS, Rating
from models.referrals import Referral
from models.rules import ProgrammeRules, Target

Unit = Literal["percent", "score", "fen", "count"]
# Numerator and denominator of one group.
Pair = tuple[float, float]
ALL = "all"
NO_SEGMENT = "none"
TREND_MONTHS = 12
# Deliveries that count as a win-back contact (the monthly offer, and marketers' campaigns).
WINBACK_PURPOSES = ("winback", "campaign")


@dataclass(frozen=True, slots=True)
class FigureDef:
    """A figure: its code (also its key in ``[programme.targets]``) and unit; ``higher``:
    whether more is better (decides which side of the target is a miss)."""

    code: str
    unit: Unit
    higher: bool = True


FIGURES = (
    FigureDef("repurchase_12m", "percent"),
    FigureDef("first_repeat_90d", "percent"),
    FigureDef("churn", "percent", higher=False),
    FigureDef("aov", "fen"),
    FigureDef("ltv_12m", "fen"),
    FigureDef("high_value_share", "percent"),
    FigureDef("active_members", "count"),
    FigureDef("follows", "count"),
    FigureDef("bindings", "count"),
    FigureDef("unfollows", "count", higher=False),
    FigureDef("points_earned", "count"),
    FigureDef("points_redeemed", "count"),
    FigureDef("points_expired", "count", higher=False),
    FigureDef("benefit_use", "percent"),
    FigureDef("participation", "percent"),
    FigureDef("winback", "percent"),
    FigureDef("wakeup", "percent"),
    FigureDef("referral_rate", "percent"),
    FigureDef("csat", "percent"),
    FigureDef("nps", "score"),
    FigureDef("pickup_in_target", "percent"),
    FigureDef("resolved_24h", "percent"),
)
BY_CODE = {f.code: f for f in FIGURES}


def value_of(unit: Unit, pair: Pair | None) -> float | None:
    """A group's value in the figure's unit; None when there is nothing to measure."""
    if pair is None:
        return None
    numerator, denominator = pair
    if unit == "count":
        return float(numerator)
    if not denominator:
        return None
    if unit == "fen":
        return numerator / denominator
    return 100.0 * numerator / denominator


@dataclass(slots=True)
class Figure:
    """One figure for the month reported: the value per month of the trend, by tier and by
    segment for the month itself, any extra breakdown, and the target."""

    definition: FigureDef
    # "YYYY-MM" → (numerator, denominator), overall; the reported month last.
    months: dict[str, Pair] = field(default_factory=dict)
    by_tier: dict[str, Pair] = field(default_factory=dict)
    by_segment: dict[str, Pair] = field(default_factory=dict)
    # Other breakdowns: "kind:<coupon kind>", "reason:<why issued>", "contacted", "holdout".
    extra: dict[str, Pair] = field(default_factory=dict)
    target: float | None = None
    target_rule: Target | None = None

    @property
    def code(self) -> str:
        return self.definition.code

    @property
    def unit(self) -> Unit:
        return self.definition.unit

    @property
    def month(self) -> str:
        return next(reversed(self.months))

    @property
    def actual(self) -> float | None:
        return value_of(self.unit, self.months.get(self.month))

    @property
    def deviation(self) -> float | None:
        """Actual minus target, in the figure's unit (percentage points for rates)."""
        if self.actual is None or self.target is None:
            return None
        return self.actual - self.target

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target or a value)."""
        if self.deviation is None:
            return None
        rule = self.target_rule
        if rule is not None and rule.at_most is not None:
            return self.deviation <= 0
        if rule is not None and rule.change_percent is not None and rule.change_percent < 0:
            return self.deviation <= 0
        return self.deviation >= 0 if self.definition.higher else self.deviation <= 0

    def trend(self) -> list[tuple[str, float | None]]:
        """(month, value) for the last TREND_MONTHS months, oldest first."""
        return [(m, value_of(self.unit, p)) for m, p in self.months.items()][-TREND_MONTHS:]


@dataclass(frozen=True, slots=True)
class MonthReport:
    """Every figure of one month."""

    month: date
    start: datetime
    end: datetime  # the month's end, or now for a month still running
    figures: dict[str, Figure]


def month_bounds(month: date, rules: ProgrammeRules, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar month; a month still running ends at ``now``."""
    first = month.replace(day=1)
    start = datetime.combine(first, time.min, rules.zone)
    end = datetime.combine(first + relativedelta(months=1), time.min, rules.zone)
    return start, min(end, now)


def _net() -> Any:
    return Order.amount_fen - Order.refunded_fen


def _within(session: AsyncSession, later: Any, earlier: Any, seconds: int) -> Any:
    """SQL: ``later`` is at most ``seconds`` after ``earlier`` (both UTC columns)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return later <= earlier + func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return func.julianday(later) <= func.julianday(earlier) + seconds / 86400.0


class _Collector:
    """Sums (numerator, denominator) per figure, month and group from grouped rows."""

    def __init__(self, months: list[str], reported: str) -> None:
        self.months = months
        self.reported = reported
        self.figures: dict[str, Figure] = {
            f.code: Figure(f, months={m: (0.0, 0.0) for m in months}) for f in FIGURES
        }

    def add(self, code: str, month: str, tier: str, segment: str, num: Any, den: Any) -> None:
        figure = self.figures[code]
        if month not in figure.months:
            return
        pair = (float(num or 0), float(den or 0))
        figure.months[month] = _plus(figure.months[month], pair)
        if month == self.reported and tier != ALL:
            figure.by_tier[tier] = _plus(figure.by_tier.get(tier, (0.0, 0.0)), pair)
            figure.by_segment[segment] = _plus(figure.by_segment.get(segment, (0.0, 0.0)), pair)

    def extra(self, code: str, key: str, num: Any, den: Any) -> None:
        figure = self.figures[code]
        pair = (float(num or 0), float(den or 0))
        figure.extra[key] = _plus(figure.extra.get(key, (0.0, 0.0)), pair)


def _plus(a: Pair, b: Pair) -> Pair:
    return (a[0] + b[0], a[1] + b[1])


def _groups(grouped: bool) -> tuple[Any, Any]:
    """The member's tier and segment as group columns (or one group)."""
    if not grouped:
        return literal(ALL), literal(ALL)
    return Member.tier, func.coalesce(Member.segment, NO_SEGMENT)


async def programme_figures(
    session: AsyncSession, rules: ProgrammeRules, month: date, now: datetime
) -> MonthReport:
    """Every figure for ``month``: its trend over the 12 months to it (and the month a year
    before, for targets set as a change), by tier and segment, and against its target."""
    first = month.replace(day=1)
    months = [first - relativedelta(months=n) for n in range(TREND_MONTHS, -1, -1)]
    keys = [f"{m:%Y-%m}" for m in months]
    collector = _Collector(keys, keys[-1])
    start, end = month_bounds(first, rules, now)
    range_start = month_bounds(months[0], rules, now)[0]
    span = (range_start, end)
    await _orders_by_month(session, collector, span)
    await _participation(session, collector, span)
    await _coupons(session, collector, span, start, end)
    await _points(session, collector, span)
    await _growth(session, collector, span)
    await _ratings(session, collector, span)
    await _conversations(session, rules, collector, span)
    for index, each in enumerate(months):
        bounds = month_bounds(each, rules, now)
        grouped = index == len(months) - 1
        await _trailing(session, rules, collector, keys[index], bounds, grouped)
        await _first_repeat(session, collector, keys[index], bounds, grouped)
    await _winback_contacts(session, rules, collector, start, end)
    figures = collector.figures
    for figure in figures.values():
        _set_target(figure, rules.targets.target(figure.code), keys[0])
    return MonthReport(first, start, end, figures)


def _set_target(figure: Figure, rule: Target | None, year_before: str) -> None:
    # The month a year before is only there for a target set as a change: the trend is 12.
    base = value_of(figure.unit, figure.months.pop(year_before, None))
    figure.target_rule = rule
    if rule is None:
        return
    if rule.at_least is not None:
        figure.target = rule.at_least
    elif rule.at_most is not None:
        figure.target = rule.at_most
    elif rule.change_percent is not None and base:  # a change on nothing is no target
        figure.target = base * (1 + rule.change_percent / 100)


async def _orders_by_month(
    session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]
) -> None:
    """客单价 (net spend / purchases) and active members (members with a purchase)."""
    month = local_period(session, Order.paid_at, span[0], "month")
    tier, segment = _groups(True)
    rows = await session.execute(
        select(
            month,
            tier,
            segment,
            func.sum(_net()),
            func.count(),
            func.count(func.distinct(Order.member_id)),
        )
        .join(Member, Member.id == Order.member_id)
        .where(Order.paid_at >= span[0], Order.paid_at < span[1], _net() > 0)
        .group_by(month, tier, segment)
    )
    for key, t, s, spend, orders, buyers in rows:
        out.add("aov", key, t, s, spend, orders)
        out.add("active_members", key, t, s, buyers, buyers)


async def _participation(
    session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]
) -> None:
    """Of the members with a purchase in the month, those who used a benefit in it: redeemed
    a coupon or spent points."""
    buyers = (
        select(
            local_period(session, Order.paid_at, span[0], "month").label("month"),
            Order.member_id.label("member_id"),
        )
        .where(Order.paid_at >= span[0], Order.paid_at < span[1], _net() > 0)
        .distinct()
        .subquery()
    )
    used = union(
        select(
            local_period(session, Coupon.redeemed_at, span[0], "month").label("month"),
            Coupon.member_id.label("member_id"),
        ).where(
            Coupon.status == "redeemed",
            Coupon.redeemed_at >= span[0],
            Coupon.redeemed_at < span[1],
        ),
        select(
            local_period(session, LedgerEntry.created_at, span[0], "month").label("month"),
            LedgerEntry.member_id.label("member_id"),
        ).where(
            LedgerEntry.kind == "redeem",
            LedgerEntry.created_at >= span[0],
            LedgerEntry.created_at < span[1],
        ),
    ).subquery()
    tier, segment = _groups(True)
    rows = await session.execute(
        select(buyers.c.month, tier, segment, func.count(used.c.member_id), func.count())
        .select_from(buyers)
        .join(Member, Member.id == buyers.c.member_id)
        .outerjoin(
            used, and_(used.c.month == buyers.c.month, used.c.member_id == buyers.c.member_id)
        )
        .group_by(buyers.c.month, tier, segment)
    )
    for key, t, s, users, count in rows:
        out.add("participation", key, t, s, users, count)


async def _coupons(
    session: AsyncSession,
    out: _Collector,
    span: tuple[datetime, datetime],
    start: datetime,
    end: datetime,
) -> None:
    """权益使用率: of the coupons issued in a month, the share redeemed (by now); for the
    reported month also by kind and by the rule that issued them (the coupon's reason)."""
    month = local_period(session, Coupon.issued_at, span[0], "month")
    tier, segment = _groups(True)
    redeemed = func.count(case((Coupon.status == "redeemed", 1)))
    rows = await session.execute(
        select(month, tier, segment, redeemed, func.count())
        .join(Member, Member.id == Coupon.member_id)
        .where(Coupon.issued_at >= span[0], Coupon.issued_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, used, issued in rows:
        out.add("benefit_use", key, t, s, used, issued)
    rows = await session.execute(
        select(Coupon.kind, Coupon.reason, redeemed, func.count())
        .where(Coupon.issued_at >= start, Coupon.issued_at < end)
        .group_by(Coupon.kind, Coupon.reason)
    )
    for kind, reason, used, issued in rows:
        out.extra("benefit_use", f"kind:{kind}", used, issued)
        out.extra("benefit_use", f"reason:{reason}", used, issued)


async def _points(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """Points earned (orders and bonuses), redeemed and expired, from the ledger."""
    month = local_period(session, LedgerEntry.created_at, span[0], "month")
    tier, segment = _groups(True)
    kind = LedgerEntry.kind
    rows = await session.execute(
        select(
            month,
            tier,
            segment,
            func.sum(case((kind.in_(("earn", "bonus")), LedgerEntry.points), else_=0)),
            -func.sum(case((kind == "redeem", LedgerEntry.points), else_=0)),
            -func.sum(case((kind == "expire", LedgerEntry.points), else_=0)),
        )
        .join(Member, Member.id == LedgerEntry.member_id)
        .where(LedgerEntry.created_at >= span[0], LedgerEntry.created_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, earned, spent, expired in rows:
        out.add("points_earned", key, t, s, earned, 0)
        out.add("points_redeemed", key, t, s, spent, 0)
        out.add("points_expired", key, t, s, expired, 0)


async def _growth(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """Follows (a member's latest follow), unfollows (still unfollowed), bindings, and the
    referral rate: of the followers new in a month, those a member referred."""
    tier, segment = _groups(True)
    for code, column in (("follows", Member.subscribed_at), ("unfollows", Member.unsubscribed_at)):
        month = local_period(session, column, span[0], "month")
        condition = [column >= span[0], column < span[1]]
        if code == "unfollows":
            condition.append(Member.subscribed.is_(False))
        rows = await session.execute(
            select(month, tier, segment, func.count())
            .where(*condition)
            .group_by(month, tier, segment)
        )
        for key, t, s, count in rows:
            out.add(code, key, t, s, count, 0)
    month = local_period(session, BindingCode.used_at, span[0], "month")
    rows = await session.execute(
        select(month, tier, segment, func.count())
        .join(Member, Member.id == BindingCode.member_id)
        .where(BindingCode.used_at >= span[0], BindingCode.used_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, count in rows:
        out.add("bindings", key, t, s, count, 0)
    month = local_period(session, Member.created_at, span[0], "month")
    rows = await session.execute(
        select(month, tier, segment, func.count(Referral.id), func.count())
        .outerjoin(Referral, Referral.referee_id == Member.id)
        .where(
            Member.openid.is_not(None), Member.created_at >= span[0], Member.created_at < span[1]
        )
        .group_by(month, tier, segment)
    )
    for key, t, s, referred, newcomers in rows:
        out.add("referral_rate", key, t, s, referred, newcomers)


async def _ratings(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """CSAT (share of 4 and 5) and NPS (promoters minus detractors, over answers), by the tier
    and segment the member had when answering."""
    month = local_period(session, Rating.answered_at, span[0], "month")
    segment = func.coalesce(Rating.segment, NO_SEGMENT)
    is_csat, is_nps = Rating.kind == CSAT, Rating.kind == NPS
    rows = await session.execute(
        select(
            month,
            Rating.tier,
            segment,
            func.count(case((is_csat & (Rating.score >= 4), 1))),
            func.count(case((is_csat, 1))),
            func.count(case((is_nps & (Rating.score >= 9), 1)))
            - func.count(case((is_nps & (Rating.score <= 6), 1))),
            func.count(case((is_nps, 1))),
        )
        .where(Rating.answered_at >= span[0], Rating.answered_at < span[1])
        .group_by(month, Rating.tier, segment)
    )
    for key, t, s, satisfied, csat, net, nps in rows:
        out.add("csat", key, t, s, satisfied, csat)
        out.add("nps", key, t, s, net, nps)


async def _conversations(
    session: AsyncSession,
    rules: ProgrammeRules,
    out: _Collector,
    span: tuple[datetime, datetime],
) -> None:
    """Of the conversations queued in a month: picked up (the first reply) within
    ``pickup_minutes``, and resolved (closed or handed back by an agent) within
    ``resolve_hours``."""
    targets = rules.targets
    c = Conversation
    month = local_period(session, c.queued_at, span[0], "month")
    tier, segment = _groups(True)
    picked = _within(session, c.first_response_at, c.queued_at, targets.pickup_minutes * 60)
    resolved = and_(
        c.outcome.in_(("closed", "handed_back")),
        _within(session, c.closed_at, c.queued_at, targets.resolve_hours * 3600),
    )
    rows = await session.execute(
        select(
            month,
            tier,
            segment,
            func.count(case((c.first_response_at.is_not(None) & picked, 1))),
            func.count(case((c.closed_at.is_not(None) & resolved, 1))),
            func.count(),
        )
        .join(Member, Member.id == c.member_id)
        .where(c.queued_at >= span[0], c.queued_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, in_time, solved, count in rows:
        out.add("pickup_in_target", key, t, s, in_time, count)
        out.add("resolved_24h", key, t, s, solved, count)


def _history(rules: ProgrammeRules, start: datetime, end: datetime) -> Any:
    """Per member with a purchase before ``end``: purchases and net spend in the 12 months to
    ``end`` and in the 12 before them, purchases before ``start`` and the last of them, and
    purchases in [start, end)."""
    year_ago = end - relativedelta(months=12)
    two_years_ago = end - relativedelta(months=24)
    paid, net = Order.paid_at, _net()
    recent = paid >= year_ago
    return (
        select(
            Order.member_id.label("member_id"),
            func.count(case((recent, 1))).label("recent"),
            func.coalesce(func.sum(case((recent, net))), 0).label("recent_net"),
            func.count(case(((paid < year_ago) & (paid >= two_years_ago), 1))).label("earlier"),
            func.count(case((paid < start, 1))).label("before"),
            func.max(case((paid < start, paid))).label("last_before"),
            func.count(case((paid >= start, 1))).label("in_month"),
        )
        .where(paid < end, net > 0)
        .group_by(Order.member_id)
        .subquery("history")
    )


def _cohorts(rules: ProgrammeRules, history: Any, start: datetime) -> tuple[Any, Any]:
    """At the month's start, by the segment rules' order: at risk (no purchase for
    ``at_risk_idle_days``, at least ``at_risk_min_orders`` before), else dormant (no purchase
    for ``dormant_idle_days``, at most ``dormant_max_orders``)."""
    seg = rules.segments
    at_risk = and_(
        history.c.last_before < start - timedelta(days=seg.at_risk_idle_days),
        history.c.before >= seg.at_risk_min_orders,
    )
    dormant = and_(
        ~at_risk,
        history.c.last_before < start - timedelta(days=seg.dormant_idle_days),
        history.c.before <= seg.dormant_max_orders,
    )
    return at_risk, dormant


async def _trailing(
    session: AsyncSession,
    rules: ProgrammeRules,
    out: _Collector,
    key: str,
    bounds: tuple[datetime, datetime],
    grouped: bool,
) -> None:
    """One month's figures over trailing windows, in one pass over members' purchases:
    repurchase, churn, net spend per buyer, high-value share, win-back and 唤醒."""
    start, end = bounds
    h = _history(rules, start, end)
    at_risk, dormant = _cohorts(rules, h, start)
    bought = h.c.in_month > 0
    tier, segment = _groups(grouped)
    query = select(
        tier,
        segment,
        func.count(case((h.c.recent >= 1, 1))),
        func.count(case((h.c.recent >= 2, 1))),
        func.count(case((h.c.earlier >= 1, 1))),
        func.count(case(((h.c.earlier >= 1) & (h.c.recent == 0), 1))),
        func.coalesce(func.sum(case((h.c.recent >= 1, h.c.recent_net))), 0),
        func.count(case((h.c.recent_net >= rules.targets.high_value_spend_fen, 1))),
        func.count(case((at_risk, 1))),
        func.count(case((at_risk & bought, 1))),
        func.count(case((dormant, 1))),
        func.count(case((dormant & bought, 1))),
    ).select_from(h)
    if grouped:
        query = query.join(Member, Member.id == h.c.member_id).group_by(tier, segment)
    for row in await session.execute(query):
        t, s, buyers, repeat, earlier, lapsed, spend, high, risk, won, asleep, woken = row
        out.add("repurchase_12m", key, t, s, repeat, buyers)
        out.add("churn", key, t, s, lapsed, earlier)
        out.add("ltv_12m", key, t, s, spend, buyers)
        out.add("high_value_share", key, t, s, high, buyers)
        out.add("winback", key, t, s, won, risk)
        out.add("wakeup", key, t, s, woken, asleep)


async def _first_repeat(
    session: AsyncSession,
    out: _Collector,
    key: str,
    bounds: tuple[datetime, datetime],
    grouped: bool,
) -> None:
    """首单复购率: of the members whose first purchase's 90 days ended in the month (first
    purchase in [start − 90 d, end − 90 d)), those with a second purchase within the 90 days."""
    start, end = bounds
    days = timedelta(days=90)
    firsts = (
        select(Order.member_id.label("member_id"), func.min(Order.paid_at).label("first"))
        .where(Order.paid_at < end, _net() > 0)
        .group_by(Order.member_id)
        .having(func.min(Order.paid_at) >= start - days, func.min(Order.paid_at) < end - days)
        .subquery("firsts")
    )
    again = (
        select(firsts.c.member_id, func.count(Order.id).label("purchases"))
        .join(Order, Order.member_id == firsts.c.member_id)
        .where(_net() > 0, _within(session, Order.paid_at, firsts.c.first, 90 * 86400))
        .group_by(firsts.c.member_id)
        .subquery("again")
    )
    tier, segment = _groups(grouped)
    query = select(tier, segment, func.count(case((again.c.purchases >= 2, 1))), func.count())
    query = query.select_from(again)
    if grouped:
        query = query.join(Member, Member.id == again.c.member_id).group_by(tier, segment)
    for t, s, repeated, cohort in await session.execute(query):
        out.add("first_repeat_90d", key, t, s, repeated, cohort)


async def _winback_contacts(
    session: AsyncSession, rules: ProgrammeRules, out: _Collector, start: datetime, end: datetime
) -> None:
    """Win-back and 唤醒 against the holdout: each cohort's rate among the members a campaign
    held out in the month (runs started in it), and among the others a win-back offer or a
    campaign reached in it."""
    h = _history(rules, start, end)
    at_risk, dormant = _cohorts(rules, h, start)
    contacted = exists().where(
        Delivery.member_id == h.c.member_id,
        Delivery.purpose.in_(WINBACK_PURPOSES),
        Delivery.status == "sent",
        Delivery.created_at >= start,
        Delivery.created_at < end,
    )
    held_out = exists().where(
        CampaignMember.member_id == h.c.member_id,
        CampaignMember.variant == HOLDOUT,
        CampaignMember.run_id == CampaignRun.id,
        CampaignRun.started_at >= start,
        CampaignRun.started_at < end,
    )
    cohort = case((at_risk, literal("winback")), (dormant, literal("wakeup")), else_=literal(""))
    # A campaign's holdout may still get the monthly win-back offer: held out comes first.
    group = case((held_out, literal(HOLDOUT)), (contacted, literal("contacted")), else_="")
    rows = await session.execute(
        select(cohort, group, func.count(case((h.c.in_month > 0, 1))), func.count())
        .select_from(h)
        .where(or_(at_risk, dormant))
        .group_by(cohort, group)
    )
    for code, where, won, count in rows:
        if where:
            out.extra(code, where, won, count)


def lift(figure: Figure) -> float | None:
    """Relative lift of the contacted members' rate over the holdout's (None without one)."""
    contacted = value_of("percent", figure.extra.get("contacted"))
    holdout = value_of("percent", figure.extra.get(HOLDOUT))
    if contacted is None or not holdout:
        return None
    return (contacted - holdout) / holdout


def figure_rows(report: MonthReport) -> Iterable[dict[str, Any]]:
    """Every figure of the report as flat rows (month, figure, group, numerator, denominator,
    value, target, deviation): what the CSV holds."""
    for figure in report.figures.values():
        for month, pair in figure.months.items():
            reported = month == figure.month
            yield _row(figure, month, ALL, pair, reported)
        for prefix, groups in (("tier", figure.by_tier), ("segment", figure.by_segment)):
            for name, pair in sorted(groups.items()):
                yield _row(figure, figure.month, f"{prefix}:{name}", pair, False)
        for name, pair in sorted(figure.extra.items()):
            yield _row(figure, figure.month, name, pair, False)


def _row(figure: Figure, month: str, group: str, pair: Pair, with_target: bool) -> dict[str, Any]:
    return {
        "month": month,
        "figure": figure.code,
        "unit": figure.unit,
        "group": group,
        "numerator": pair[0],
        "denominator": pair[1],
        "value": value_of(figure.unit, pair),
        "target": figure.target if with_target else None,
        "deviation": figure.deviation if with_target else None,
    }
