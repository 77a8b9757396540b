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
repeat) are one statement for every month at once: one pass over the purchases, grouped by
member, gives each member's running count and net spend at every window edge the months need,
and each month's windows are differences of those (``_trailing``).

Stored figures (tables ``programme_figures`` and ``programme_figure_months``): a month that has
ended is computed once, by the monthly job or whoever asks first, and read from the tables
after that, so a report computes only the months not stored yet and the dashboard's trend is a
read. Its figures are those of that first computation: a refund, or the redemption of a coupon
issued in it, arriving later does not change them (``refresh=True``, i.e. ``bot report monthly
--recompute``, computes the months again). A month still running is stored too, but reused
only for ``LIVE_SECONDS``: the dashboard's current month is at most that old, and costs one
computation per that time however many views.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    Boolean,
    Float,
    String,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert, local_period
from models.binding import BindingCode
from models.campaigns import HOLDOUT, CampaignMember, CampaignRun
from models.cases import ServiceCase
from models.conversations import Conversation
from models.coupons import Coupon
from models.deliveries import Delivery
from models.follow_ups import COMPLETED_IN_TIME, CONNECTED, FollowUpAttempt
from models.ledger import LedgerEntry
from models.members import Member
from models.orders import Order
from models.ratings import CSAT, NPS, FollowUp, Rating
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
# How long a month still running is reused from the store before it is computed again.
LIVE_SECONDS = 300
FIRST_REPEAT_DAYS = 90
# Columns per month of _trailing's statement.
MEASURES = 15
# Per month and figure: group ("all", "tier:<code>", "segment:<code>", or a breakdown such as
# "kind:<coupon kind>", "contacted") → (numerator, denominator).
Groups = dict[str, Pair]


class StoredFigure(Base):
    """One group's (numerator, denominator) of one figure in one month, as computed."""

    __tablename__ = "programme_figures"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    figure: Mapped[str] = mapped_column(String(32), primary_key=True)
    group: Mapped[str] = mapped_column("grp", String(220), primary_key=True)
    numerator: Mapped[float] = mapped_column(Float)
    denominator: Mapped[float] = mapped_column(Float)


class StoredMonth(Base):
    """A month whose figures are stored: when they were computed, whether the month had ended
    then (``final``: kept for good; otherwise reused for ``LIVE_SECONDS``), and whether its
    breakdowns (coupon kinds and reasons, win-back contacts and holdout) are there: they are
    computed for the month a report is about, not for the months of its trend."""

    __tablename__ = "programme_figure_months"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    final: Mapped[bool] = mapped_column(Boolean)
    breakdowns: Mapped[bool] = mapped_column(Boolean)


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
    FigureDef("cases_in_due", "percent"),
    FigureDef("callback_connect", "percent"),
    FigureDef("follow_up_completion", "percent"),
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
    """Sums (numerator, denominator) per month, figure and group from grouped rows; months
    not being computed are ignored."""

    def __init__(self, months: Iterable[str]) -> None:
        self.values: dict[str, dict[str, Groups]] = {
            m: {f.code: {} for f in FIGURES} for m in months
        }

    def add(self, code: str, month: str, tier: str, segment: str, num: Any, den: Any) -> None:
        figures = self.values.get(month)
        if figures is None:
            return
        pair = (float(num or 0), float(den or 0))
        groups = figures[code]
        for group in (ALL, f"tier:{tier}", f"segment:{segment}"):
            groups[group] = _plus(groups.get(group, (0.0, 0.0)), pair)

    def extra(self, code: str, month: str, key: str, num: Any, den: Any) -> None:
        figures = self.values.get(month)
        if figures is None:
            return
        groups = figures[code]
        groups[key] = _plus(groups.get(key, (0.0, 0.0)), (float(num or 0), float(den or 0)))


def _plus(a: Pair, b: Pair) -> Pair:
    return (a[0] + b[0], a[1] + b[1])


def _groups() -> tuple[Any, Any]:
    """The member's tier and segment as group columns."""
    return Member.tier, func.coalesce(Member.segment, NO_SEGMENT)


async def programme_figures(
    session: AsyncSession,
    rules: ProgrammeRules,
    month: date,
    now: datetime,
    *,
    refresh: bool = False,
) -> MonthReport:
    """Every figure for ``month``: its trend over the 12 months to it (and the month a year
    before, for targets set as a change), by tier and segment, and against its target.

    Months stored (module docstring) are read; the others are computed together, stored, and
    the session committed. ``refresh``: compute every month again and replace what is stored.
    """
    first = month.replace(day=1)
    months = [first - relativedelta(months=n) for n in range(TREND_MONTHS, -1, -1)]
    keys = [f"{m:%Y-%m}" for m in months]
    reported = keys[-1]
    values = {} if refresh else await _stored(session, keys, now)
    missing = [m for m, key in zip(months, keys, strict=True) if key not in values]
    computed: dict[str, dict[str, Groups]] = {}
    breakdowns = reported not in values or not values[reported][1]
    if missing or breakdowns:
        computed = await _compute(session, rules, missing, now, first if breakdowns else None)
    if computed:
        await _store(session, rules, computed, reported, now)
        await session.commit()
    by_month = {key: values[key][0] if key in values else {} for key in keys}
    for key, figures in computed.items():
        if key in values:  # the reported month's breakdowns, added to what was stored
            for code, groups in figures.items():
                by_month[key][code].update(groups)
        else:
            by_month[key] = figures
    start, end = month_bounds(first, rules, now)
    report = MonthReport(first, start, end, _figures(by_month, keys))
    for figure in report.figures.values():
        _set_target(figure, rules.targets.target(figure.code), keys[0])
    return report


def _figures(by_month: dict[str, dict[str, Groups]], keys: list[str]) -> dict[str, Figure]:
    """Figures from groups by month: overall for every month, the rest for the last."""
    reported = keys[-1]
    figures = {}
    for definition in FIGURES:
        code = definition.code
        figure = Figure(definition)
        for key in keys:
            figure.months[key] = by_month[key].get(code, {}).get(ALL, (0.0, 0.0))
        for group, pair in by_month[reported].get(code, {}).items():
            kind, _, name = group.partition(":")
            if kind == "tier":
                figure.by_tier[name] = pair
            elif kind == "segment":
                figure.by_segment[name] = pair
            elif group != ALL:
                figure.extra[group] = pair
        figures[code] = figure
    return figures


async def _stored(
    session: AsyncSession, keys: list[str], now: datetime
) -> dict[str, tuple[dict[str, Groups], bool]]:
    """The months of ``keys`` stored and still good (final, or computed less than
    ``LIVE_SECONDS`` ago): their groups by figure, and whether they have their breakdowns."""
    fresh_after = now - timedelta(seconds=LIVE_SECONDS)
    months = await session.execute(
        select(StoredMonth.month, StoredMonth.breakdowns).where(
            StoredMonth.month.in_(keys),
            or_(StoredMonth.final.is_(True), StoredMonth.computed_at > fresh_after),
        )
    )
    found: dict[str, tuple[dict[str, Groups], bool]] = {
        key: ({f.code: {} for f in FIGURES}, bool(full)) for key, full in months
    }
    if not found:
        return found
    rows = await session.execute(
        select(
            StoredFigure.month,
            StoredFigure.figure,
            StoredFigure.group,
            StoredFigure.numerator,
            StoredFigure.denominator,
        ).where(StoredFigure.month.in_(list(found)))
    )
    for key, code, group, numerator, denominator in rows:
        if code in BY_CODE:  # a figure since retired is ignored
            found[key][0][code][group] = (numerator, denominator)
    return found


async def _store(
    session: AsyncSession,
    rules: ProgrammeRules,
    computed: dict[str, dict[str, Groups]],
    reported: str,
    now: datetime,
) -> None:
    """Store what was computed: whole months (replacing what was there) and the reported
    month's breakdowns (added to it when the rest was stored). Rows are written with ON
    CONFLICT, so two computations of the same month at once both succeed."""
    insert = dialect_insert(session)
    whole = [key for key in computed if key != reported or ALL in computed[key]["aov"]]
    if whole:
        await session.execute(delete(StoredFigure).where(StoredFigure.month.in_(whole)))
    rows = [
        {"month": key, "figure": code, "grp": group, "numerator": n, "denominator": d}
        for key, figures in computed.items()
        for code, groups in figures.items()
        for group, (n, d) in groups.items()
    ]
    for offset in range(0, len(rows), 1000):
        statement = insert(StoredFigure.__table__).values(rows[offset : offset + 1000])
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["month", "figure", "grp"],
                set_={
                    "numerator": statement.excluded.numerator,
                    "denominator": statement.excluded.denominator,
                },
            )
        )
    if reported in computed and reported not in whole:
        await session.execute(
            update(StoredMonth).where(StoredMonth.month == reported).values(breakdowns=True)
        )
    for key in whole:
        ended = _month_end(key, rules) <= now
        statement = insert(StoredMonth.__table__).values(
            month=key, computed_at=now, final=ended, breakdowns=key == reported
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["month"],
                set_={
                    "computed_at": statement.excluded.computed_at,
                    "final": statement.excluded.final,
                    "breakdowns": statement.excluded.breakdowns,
                },
            )
        )


def _month_end(key: str, rules: ProgrammeRules) -> datetime:
    year, month = (int(part) for part in key.split("-"))
    return datetime.combine(date(year, month, 1) + relativedelta(months=1), time.min, rules.zone)


async def _compute(
    session: AsyncSession,
    rules: ProgrammeRules,
    months: list[date],
    now: datetime,
    breakdowns: date | None = None,
) -> dict[str, dict[str, Groups]]:
    """Every figure of ``months`` (not necessarily consecutive), by tier and segment, and the
    breakdowns of the month ``breakdowns`` (one of them, or one stored without them)."""
    keys = [f"{m:%Y-%m}" for m in months]
    collector = _Collector([*keys, *([f"{breakdowns:%Y-%m}"] if breakdowns else [])])
    bounds = [month_bounds(m, rules, now) for m in months]

    async def trailing(db: AsyncSession) -> None:
        if months:
            await _trailing(db, rules, collector, dict(zip(keys, bounds, strict=True)))

    async def bucketed(db: AsyncSession) -> None:
        if months:
            span = (bounds[0][0], max(end for _, end in bounds))
            await _orders_by_month(db, collector, span)
            await _coupons(db, collector, span)
            await _points(db, collector, span)
            await _growth(db, collector, span)
            await _ratings(db, collector, span)
            await _conversations(db, rules, collector, span)
            await _cases(db, collector, span)
            await _follow_ups(db, collector, span)
        if breakdowns is not None:
            await _breakdowns(db, rules, collector, breakdowns, now)

    await _side_by_side(session, trailing, bucketed)
    for key in keys:  # a month computed whole has an overall value for every figure
        for groups in collector.values[key].values():
            groups.setdefault(ALL, (0.0, 0.0))
    return collector.values


async def _side_by_side(
    session: AsyncSession, *works: Callable[[AsyncSession], Awaitable[None]]
) -> None:
    """Run ``works`` (read-only) at once on PostgreSQL, each on a connection of its own: a
    statement uses one core, and the longest (``_trailing``) is about half of the work.
    Elsewhere (SQLite, or a session bound to a connection) one after the other."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        for work in works:
            await work(session)
        return

    async def apart(work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        async with AsyncSession(engine) as own:
            await work(own)

    async with asyncio.TaskGroup() as group:
        for work in works:
            group.create_task(apart(work))


async def _breakdowns(
    session: AsyncSession, rules: ProgrammeRules, out: _Collector, month: date, now: datetime
) -> None:
    """A month's breakdowns: benefit use by coupon kind and reason, win-back and 唤醒 among
    the contacted and the holdout."""
    key = f"{month:%Y-%m}"
    start, end = month_bounds(month, rules, now)
    await _coupon_kinds(session, out, key, start, end)
    await _winback_contacts(session, rules, out, key, start, end)


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
    """客单价 (net spend / purchases); active members and participation are counted with the
    trailing windows (``_trailing``)."""
    month = local_period(session, Order.paid_at, span[0], "month")
    tier, segment = _groups()
    rows = await session.execute(
        select(month, tier, segment, func.sum(_net()), func.count())
        .join(Member, Member.id == Order.member_id)
        .where(Order.paid_at >= span[0], Order.paid_at < span[1], _net() > 0)
        .group_by(month, tier, segment)
    )
    for key, t, s, spend, orders in rows:
        out.add("aov", key, t, s, spend, orders)


async def _coupons(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """权益使用率: of the coupons issued in a month, the share redeemed (by now)."""
    month = local_period(session, Coupon.issued_at, span[0], "month")
    tier, segment = _groups()
    redeemed = func.count(case((Coupon.status == "redeemed", 1)))
    rows = await session.execute(
        select(month, tier, segment, redeemed, func.count())
        .join(Member, Member.id == Coupon.member_id)
        .where(Coupon.issued_at >= span[0], Coupon.issued_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, used, issued in rows:
        out.add("benefit_use", key, t, s, used, issued)


async def _coupon_kinds(
    session: AsyncSession, out: _Collector, key: str, start: datetime, end: datetime
) -> None:
    """权益使用率 of one month by coupon kind and by the rule that issued them (the reason)."""
    redeemed = func.count(case((Coupon.status == "redeemed", 1)))
    rows = await session.execute(
        select(Coupon.kind, Coupon.reason, redeemed, func.count())
        .where(Coupon.issued_at >= start, Coupon.issued_at < end)
        .group_by(Coupon.kind, Coupon.reason)
    )
    for kind, reason, used, issued in rows:
        out.extra("benefit_use", key, f"kind:{kind}", used, issued)
        out.extra("benefit_use", key, f"reason:{reason}", used, issued)


async def _points(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """Points earned (orders and bonuses), redeemed and expired, from the ledger."""
    month = local_period(session, LedgerEntry.created_at, span[0], "month")
    tier, segment = _groups()
    kind = LedgerEntry.kind
    rows = await session.execute(
        select(
            month,
            tier,
            segment,
            func.sum(case((kind.in_(("earn", "bonus")), LedgerEntry.points), else_=0)),
            # Net of cancelled redemptions, whose points came back as ``return`` entries.
            -func.sum(case((kind.in_(("redeem", "return")), LedgerEntry.points), else_=0)),
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
    tier, segment = _groups()
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
    tier, segment = _groups()
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


async def _cases(session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]) -> None:
    """Of the cases opened in a month: closed by their due time (models/cases.py), overall,
    by tier and segment, and by category (``category:<code>``: the cases opened of each are
    its denominator)."""
    s = ServiceCase
    month = local_period(session, s.opened_at, span[0], "month")
    tier, segment = _groups()
    rows = await session.execute(
        select(
            month,
            tier,
            segment,
            s.category,
            func.count(case(((s.status == "closed") & (s.closed_at <= s.due_at), 1))),
            func.count(),
        )
        .join(Member, Member.id == s.member_id)
        .where(s.opened_at >= span[0], s.opened_at < span[1])
        .group_by(month, tier, segment, s.category)
    )
    for key, t, seg, category, in_due, opened in rows:
        out.add("cases_in_due", key, t, seg, in_due, opened)
        out.extra("cases_in_due", key, f"category:{category}", in_due, opened)


async def _follow_ups(
    session: AsyncSession, out: _Collector, span: tuple[datetime, datetime]
) -> None:
    """The work list (models/follow_ups.py): call attempts made in a month that connected
    (回访接通率), and follow-ups due in a month closed by their due time (完成率)."""
    tier, segment = _groups()
    month = local_period(session, FollowUpAttempt.at, span[0], "month")
    rows = await session.execute(
        select(month, tier, segment, func.count(CONNECTED), func.count())
        .join(FollowUp, FollowUp.id == FollowUpAttempt.follow_up_id)
        .join(Member, Member.id == FollowUp.member_id)
        .where(FollowUpAttempt.at >= span[0], FollowUpAttempt.at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, connected, attempts in rows:
        out.add("callback_connect", key, t, s, connected, attempts)
    month = local_period(session, FollowUp.due_at, span[0], "month")
    rows = await session.execute(
        select(month, tier, segment, func.count(COMPLETED_IN_TIME), func.count())
        .join(Member, Member.id == FollowUp.member_id)
        .where(FollowUp.due_at >= span[0], FollowUp.due_at < span[1])
        .group_by(month, tier, segment)
    )
    for key, t, s, completed, due in rows:
        out.add("follow_up_completion", key, t, s, completed, due)


def _history(rules: ProgrammeRules, start: datetime, end: datetime) -> Any:
    """Per member with a purchase before ``end``: purchases before ``start`` and the last of
    them, and purchases in [start, end)."""
    paid = Order.paid_at
    return (
        select(
            Order.member_id.label("member_id"),
            func.count(case((paid < start, 1))).label("before"),
            func.max(case((paid < start, paid))).label("last_before"),
            func.count(case((paid >= start, 1))).label("in_month"),
        )
        .where(paid < end, _net() > 0)
        .group_by(Order.member_id)
        .subquery("history")
    )


def _cohorts(rules: ProgrammeRules, last_before: Any, before: Any, start: datetime) -> Any:
    """At the month's start, by the segment rules' order: at risk (no purchase for
    ``at_risk_idle_days``, at least ``at_risk_min_orders`` before), else dormant (no purchase
    for ``dormant_idle_days``, at most ``dormant_max_orders``)."""
    seg = rules.segments
    at_risk = and_(
        last_before < start - timedelta(days=seg.at_risk_idle_days),
        before >= seg.at_risk_min_orders,
    )
    dormant = and_(
        ~at_risk,
        last_before < start - timedelta(days=seg.dormant_idle_days),
        before <= seg.dormant_max_orders,
    )
    return at_risk, dormant


def _edges(months: dict[str, tuple[datetime, datetime]]) -> list[datetime]:
    """Every window edge the months need: each month's start and end, and the end 12 and 24
    months before (a month still running ends now, so its windows end at now too)."""
    edges = set()
    for start, end in months.values():
        edges.update((start, end, end - relativedelta(months=12), end - relativedelta(months=24)))
    return sorted(edges)


async def _trailing(
    session: AsyncSession,
    rules: ProgrammeRules,
    out: _Collector,
    months: dict[str, tuple[datetime, datetime]],
) -> None:
    """Every month's figures over trailing windows, in one statement: repurchase, churn, net
    spend per buyer, high-value share, win-back and 唤醒, first repeat.

    One pass over the purchases grouped by member gives, at each edge (``_edges``), the
    member's purchases before it, their net spend and the last of them; a window [a, b) is
    the difference of its edges. The same pass gives the first purchase and the purchases in
    the 90 days from it. Then the members' figures are summed per month by tier and segment.
    Per month, over the members with a purchase before its end: purchases and net spend in
    the 12 months to the end, in the 12 before them, before the month's start (the last of
    them), and in the month."""
    edges = _edges(months)
    at = {edge: i for i, edge in enumerate(edges)}
    latest = edges[-1]
    paid, net = Order.paid_at, _net()
    purchases = (
        select(
            Order.member_id.label("member_id"),
            paid.label("paid"),
            net.label("net"),
            func.min(paid).over(partition_by=Order.member_id).label("first"),
        )
        .where(paid < latest, net > 0)
        .subquery("purchases")
    )
    p = purchases.c
    starts = {start for start, _ in months.values()}
    ends = {e for _, end in months.values() for e in (end, end - relativedelta(months=12))}
    columns = [
        p.member_id,
        func.min(p.first).label("first"),
        func.count(case((_within(session, p.paid, p.first, FIRST_REPEAT_DAYS * 86400), 1))).label(
            "early"
        ),
    ]
    for edge, i in at.items():
        columns.append(func.count(case((p.paid < edge, 1))).label(f"n{i}"))
        if edge in ends:
            columns.append(func.sum(case((p.paid < edge, p.net), else_=0)).label(f"s{i}"))
        if edge in starts:
            columns.append(func.max(case((p.paid < edge, p.paid))).label(f"l{i}"))
    facts = select(*columns).group_by(p.member_id).subquery("facts")
    f = facts.c
    # Benefits used (a coupon redeemed, points spent), per member: how many in each month.
    span = (min(start for start, _ in months.values()), latest)
    used_at = union_all(
        select(Coupon.member_id.label("member_id"), Coupon.redeemed_at.label("at")).where(
            Coupon.status == "redeemed",
            Coupon.redeemed_at >= span[0],
            Coupon.redeemed_at < span[1],
        ),
        select(LedgerEntry.member_id, LedgerEntry.created_at).where(
            LedgerEntry.kind == "redeem",
            LedgerEntry.created_at >= span[0],
            LedgerEntry.created_at < span[1],
        ),
    ).subquery("used_at")
    u = used_at.c
    used = (
        select(
            u.member_id,
            *(
                func.count(case((and_(u.at >= start, u.at < end), 1))).label(f"u{i}")
                for i, (start, end) in enumerate(months.values())
            ),
        )
        .group_by(u.member_id)
        .subquery("used")
    )
    high = rules.targets.high_value_spend_fen
    days = timedelta(days=FIRST_REPEAT_DAYS)
    measures = []
    for index, (start, end) in enumerate(months.values()):
        year_ago, two_years_ago = end - relativedelta(months=12), end - relativedelta(months=24)
        count_to = {e: f[f"n{at[e]}"] for e in (start, end, year_ago, two_years_ago)}
        recent = count_to[end] - count_to[year_ago]
        recent_net = f[f"s{at[end]}"] - f[f"s{at[year_ago]}"]
        earlier = count_to[year_ago] - count_to[two_years_ago]
        before = count_to[start]
        bought = count_to[end] - before > 0
        at_risk, dormant = _cohorts(rules, f[f"l{at[start]}"], before, start)
        cohort = and_(f.first >= start - days, f.first < end - days)
        measures += [
            func.count(case((recent >= 1, 1))),
            func.count(case((recent >= 2, 1))),
            func.count(case((earlier >= 1, 1))),
            func.count(case(((earlier >= 1) & (recent == 0), 1))),
            func.coalesce(func.sum(case((recent >= 1, recent_net))), 0),
            func.count(case(((count_to[end] > 0) & (recent_net >= high), 1))),
            func.count(case((at_risk, 1))),
            func.count(case((at_risk & bought, 1))),
            func.count(case((dormant, 1))),
            func.count(case((dormant & bought, 1))),
            func.count(case((cohort & (f.early >= 2), 1))),
            func.count(case((cohort, 1))),
            # Members with a purchase before the end: a group without any has no figures.
            func.count(case((count_to[end] > 0, 1))),
            # Active members (a purchase in the month), and those of them who used a benefit.
            func.count(case((bought, 1))),
            func.count(case((bought & (func.coalesce(used.c[f"u{index}"], 0) > 0), 1))),
        ]
    tier, segment = _groups()
    query = (
        select(tier, segment, *measures)
        .select_from(facts)
        .join(Member, Member.id == f.member_id)
        .outerjoin(used, used.c.member_id == f.member_id)
        .group_by(tier, segment)
    )
    for t, s, *values in await session.execute(query):
        for index, key in enumerate(months):
            month_values = values[index * MEASURES : (index + 1) * MEASURES]
            buyers, repeat, earlier, lapsed, spend, high_value, risk, won, asleep, woken = (
                month_values[:10]
            )
            repeated, cohort_size, history, active, participants = month_values[10:]
            if active:
                out.add("active_members", key, t, s, active, active)
                out.add("participation", key, t, s, participants, active)
            if cohort_size:
                out.add("first_repeat_90d", key, t, s, repeated, cohort_size)
            if not history:
                continue
            out.add("repurchase_12m", key, t, s, repeat, buyers)
            out.add("churn", key, t, s, lapsed, earlier)
            out.add("ltv_12m", key, t, s, spend, buyers)
            out.add("high_value_share", key, t, s, high_value, buyers)
            out.add("winback", key, t, s, won, risk)
            out.add("wakeup", key, t, s, woken, asleep)


async def _winback_contacts(
    session: AsyncSession,
    rules: ProgrammeRules,
    out: _Collector,
    key: str,
    start: datetime,
    end: datetime,
) -> None:
    """Win-back and 唤醒 against the holdout: each cohort's rate among the members a campaign
    held out in the month (runs started in it), and among the others a win-back offer or a
    campaign reached in it."""
    h = _history(rules, start, end)
    at_risk, dormant = _cohorts(rules, h.c.last_before, h.c.before, start)
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
            out.extra(code, key, where, won, count)


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
