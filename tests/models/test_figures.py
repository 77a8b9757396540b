"""Each programme figure's formula against a small data set computed by hand (both lanes).

The month reported is October 2026 (Asia/Shanghai); the clock stands at 20 November 2026.
Members, by what they did (¥ amounts):

- A (gold, core): ¥200 on 1 March (so dormant at 1 October), ¥300 less a ¥50 refund on 5
  October, ¥100 at 23:30 local on 31 October (still October); a coupon redeemed in October; a
  binding code used; refers N.
- B (basic, dormant at 1 October: one purchase, on 1 June): buys ¥100 on 10 October (woken up).
- C (silver, at risk at 1 October: three purchases, the last on 1 February): no purchase in
  October; spends 30 points in October.
- D (basic): ¥100 on 10 October 2025, and ¥200 on 15 October 2026 refunded in full (no
  purchase): lapsed, and dormant at 1 October.
- E: first purchase 10 July, second 1 August (a first repeat within 90 days).
- F: first purchase 20 July, nothing after.
- G: ¥100 on 1 June 2025 and ¥100 on 1 September 2026; unfollowed on 12 October.
- N and P followed in October; a member referred N.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.binding import BindingCode
from models.campaigns import Campaign, CampaignMember, CampaignRun
from models.cases import ServiceCase
from models.conversations import Conversation
from models.coupons import Coupon
from models.deliveries import Delivery
from models.figures import (
    FIGURES,
    LIVE_SECONDS,
    MonthReport,
    StoredFigure,
    StoredMonth,
    _compute,
    lift,
    programme_figures,
)
from models.ledger import LedgerEntry
from models.members import Member
from models.orders import Order
from models.ratings import Rating
from models.referrals import Referral
from models.rules import ProgrammeRules, ProgrammeTargets
from models.staff import Staff

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=ZONE)
MONTH = date(2026, 10, 1)
RULES = ProgrammeRules(targets=ProgrammeTargets(high_value_spend_fen=50_000))
_serial = itertools.count()


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)  # type: ignore[misc]


def _member(name: str, tier: str = "basic", segment: str | None = None, **kw: Any) -> Member:
    joined = kw.pop("joined", local(2025, 1, 1))
    return Member(
        openid=f"o_fig_{name}",
        name=name,
        tier=tier,
        segment=segment,
        subscribed=kw.pop("subscribed", True),
        subscribed_at=joined,
        created_at=joined,
        **kw,
    )


def _order(member: Member, at: datetime, yuan: int, refunded_yuan: int = 0) -> Order:
    n = next(_serial)
    return Order(
        shop_order_id=f"FIG-{n}",
        member_id=member.id,
        amount_fen=yuan * 100,
        refunded_fen=refunded_yuan * 100,
        paid_at=at,
        channel="pos",
        points_earned=0,
        points_reversed=0,
        fingerprint=str(n),
        created_at=at,
    )


def _entry(member: Member, kind: str, points: int, at: datetime) -> LedgerEntry:
    n = next(_serial)
    return LedgerEntry(
        member_id=member.id,
        kind=kind,
        points=points,
        balance_after=0,
        reason=kind,
        idempotency_key=f"fig-{n}",
        created_at=at,
    )


def _coupon(member: Member, kind: str, at: datetime, status: str, reason: str) -> Coupon:
    n = next(_serial)
    return Coupon(
        code=f"FIGCODE{n:05d}",
        member_id=member.id,
        kind=kind,
        status=status,
        reason=reason,
        idempotency_key=f"fig-coupon-{n}",
        issued_at=at,
        valid_from=at,
        valid_until=at + timedelta(days=30),
        redeemed_at=at + timedelta(days=1) if status == "redeemed" else None,
    )


def _conversation(
    member: Member,
    queued: datetime,
    reply_after: timedelta | None,
    closed_after: timedelta | None,
    outcome: str | None,
) -> Conversation:
    return Conversation(
        member_id=member.id,
        status="closed" if outcome else "queued",
        reason="asked",
        queued_at=queued,
        first_response_at=queued + reply_after if reply_after else None,
        last_activity_at=queued,
        closed_at=queued + closed_after if closed_after else None,
        outcome=outcome,
    )


def _rating(member: Member, kind: str, score: int, at: datetime, tier: str) -> Rating:
    return Rating(
        question_id=f"fig-q-{next(_serial)}",
        member_id=member.id,
        kind=kind,
        score=score,
        context="order",
        tier=tier,
        segment="core",
        asked_at=at,
        answered_at=at,
    )


def _delivery(member: Member, purpose: str, at: datetime) -> Delivery:
    return Delivery(
        dedupe_key=f"fig:{next(_serial)}",
        purpose=purpose,
        category="marketing",
        member_id=member.id,
        payload={},
        status="sent",
        not_before=at,
        created_at=at,
        updated_at=at,
    )


async def _load(session: AsyncSession) -> dict[str, Member]:
    m = {
        "A": _member("A", "gold", "core"),
        "B": _member("B", "basic", "dormant"),
        "C": _member("C", "silver", "at_risk"),
        "D": _member("D", "basic", "other"),
        "E": _member("E"),
        "F": _member("F"),
        "G": _member("G", subscribed=False, unsubscribed_at=local(2026, 10, 12)),
        "N": _member("N", joined=local(2026, 10, 3)),
        "P": _member("P", joined=local(2026, 10, 25)),
    }
    session.add_all(m.values())
    await session.flush()
    a, b, c, d, e, f, g = (m[k] for k in "ABCDEFG")
    session.add_all(
        [
            _order(a, local(2026, 3, 1), 200),
            _order(a, local(2026, 10, 5), 300, refunded_yuan=50),
            _order(a, local(2026, 10, 31, 23, 30), 100),
            _order(a, local(2026, 11, 1, 0, 30), 999),  # November: in no October figure
            _order(b, local(2026, 6, 1), 500),
            _order(b, local(2026, 10, 10), 100),
            *(_order(c, local(y, mo, 1), 100) for y, mo in ((2025, 12), (2026, 1), (2026, 2))),
            _order(d, local(2025, 10, 10), 100),
            _order(d, local(2026, 10, 15), 200, refunded_yuan=200),
            _order(e, local(2026, 7, 10), 100),
            _order(e, local(2026, 8, 1), 50),
            _order(f, local(2026, 7, 20), 80),
            _order(g, local(2025, 6, 1), 100),
            _order(g, local(2026, 9, 1), 100),
            _entry(a, "earn", 250, local(2026, 10, 5)),
            _entry(a, "bonus", 50, local(2026, 10, 6)),
            _entry(c, "redeem", -30, local(2026, 10, 7)),
            _entry(c, "expire", -20, local(2026, 10, 8)),
            _entry(b, "redeem", -10, local(2026, 9, 7)),  # September
            _coupon(a, "cash_10", local(2026, 10, 2), "redeemed", "winback"),
            _coupon(b, "cash_10", local(2026, 10, 2), "issued", "winback"),
            _coupon(c, "birthday_gift", local(2026, 10, 3), "expired", "生日礼"),
            BindingCode(
                code="FIGBIND1",
                member_id=a.id,
                created_at=local(2026, 10, 8),
                expires_at=local(2026, 10, 9),
                used_at=local(2026, 10, 8, 12),
            ),
            Referral(
                referrer_id=a.id,
                referee_id=m["N"].id,
                code="FIGREF01",
                source="subscribe",
                status="joined",
                attributed_at=local(2026, 10, 3),
            ),
            *(_rating(a, "csat", s, local(2026, 10, 9), "gold") for s in (5, 4)),
            _rating(b, "csat", 2, local(2026, 10, 9), "basic"),
            _rating(b, "csat", 1, local(2026, 9, 9), "basic"),  # September
            *(_rating(a, "nps", s, local(2026, 10, 9), "gold") for s in (10, 9, 7, 3)),
            _conversation(
                a, local(2026, 10, 4, 10), timedelta(minutes=30), timedelta(hours=1), "closed"
            ),
            _conversation(
                b, local(2026, 10, 4, 10), timedelta(hours=2), timedelta(hours=30), "closed"
            ),
            _conversation(c, local(2026, 10, 5, 10), None, timedelta(minutes=40), "idle"),
            _conversation(
                d,
                local(2026, 10, 31, 23, 30),
                timedelta(minutes=5),
                timedelta(hours=1),
                "handed_back",
            ),
            _delivery(c, "winback", local(2026, 10, 15, 11)),
            _delivery(b, "winback", local(2026, 10, 15, 11)),
        ]
    )
    await session.flush()
    # A's case closed 2 hours in (within its 24-hour due), B's after 30 hours (late).
    agent = Staff(
        username="fig_agent",
        password_hash="x",
        role="agent",
        availability="offline",
        disabled=False,
        created_at=local(2026, 10, 1),
    )
    session.add(agent)
    await session.flush()
    conversations = {c.member_id: c for c in (await session.scalars(select(Conversation))).all()}
    for who, category, hours in ((a, "returns", 2), (b, "quality", 30)):
        queued = conversations[who.id].queued_at
        session.add(
            ServiceCase(
                member_id=who.id,
                conversation_id=conversations[who.id].id,
                category=category,
                notes="",
                status="closed",
                owner_id=agent.id,
                opened_by=agent.id,
                opened_at=queued,
                due_at=queued + timedelta(hours=24),
                closed_at=queued + timedelta(hours=hours),
                closed_by=agent.id,
                outcome="ok",
                reopened=0,
            )
        )
    campaign = Campaign(
        name="回归",
        audience={},
        variants=[{"name": "A", "text": "x", "share": 100}],
        holdout_percent=10,
        schedule="now",
        created_by="mia",
        created_at=local(2026, 10, 1),
        updated_at=local(2026, 10, 1),
    )
    session.add(campaign)
    await session.flush()
    run = CampaignRun(campaign_id=campaign.id, started_at=local(2026, 10, 2), targeted=1)
    session.add(run)
    await session.flush()
    session.add(CampaignMember(run_id=run.id, member_id=d.id, variant="holdout"))
    await session.commit()
    return m


@pytest.fixture
async def report(sessions: async_sessionmaker[AsyncSession]) -> MonthReport:
    async with sessions() as session:
        await _load(session)
        return await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC))


# (figure, numerator, denominator, value) for October 2026, overall.
OCTOBER = [
    ("repurchase_12m", 4, 6, 4 / 6 * 100),  # A B C E of A B C E F G
    ("first_repeat_90d", 1, 2, 50.0),  # E of E F (first purchases 3 July to 2 August)
    ("churn", 1, 2, 50.0),  # D of D G (bought Nov 2024 - Oct 2025)
    ("aov", 45_000, 3, 15_000.0),  # ¥250 + ¥100 + ¥100 over 3 purchases
    ("ltv_12m", 178_000, 6, 178_000 / 6),  # A 550 B 600 C 300 E 150 F 80 G 100
    ("high_value_share", 2, 6, 2 / 6 * 100),  # A and B spent ¥500 or more
    ("active_members", 2, 2, 2.0),
    ("follows", 2, 0, 2.0),  # N, P
    ("bindings", 1, 0, 1.0),
    ("unfollows", 1, 0, 1.0),  # G
    ("points_earned", 300, 0, 300.0),
    ("points_redeemed", 30, 0, 30.0),
    ("points_expired", 20, 0, 20.0),
    ("benefit_use", 1, 3, 1 / 3 * 100),
    ("participation", 1, 2, 50.0),  # A redeemed a coupon; B used nothing in October
    ("winback", 0, 1, 0.0),  # C
    ("wakeup", 2, 3, 2 / 3 * 100),  # A and B woke, D did not
    ("referral_rate", 1, 2, 50.0),  # N of N, P
    ("csat", 2, 3, 2 / 3 * 100),
    ("nps", 1, 4, 25.0),  # 2 promoters - 1 detractor over 4
    ("pickup_in_target", 2, 4, 50.0),  # within 60 minutes: A's and D's
    ("resolved_24h", 2, 4, 50.0),  # closed or handed back within 24 h: A's and D's
    ("cases_in_due", 1, 2, 50.0),  # A's case closed by its due time, B's late
    # The work list's figures: tests/models/test_follow_ups.py gives them data.
    ("callback_connect", 0, 0, None),
    ("follow_up_completion", 0, 0, None),
]


def test_every_figure_has_a_row() -> None:
    assert {code for code, *_ in OCTOBER} == {f.code for f in FIGURES}


@pytest.mark.parametrize(("code", "numerator", "denominator", "value"), OCTOBER)
async def test_each_figure_for_the_month(
    report: MonthReport, code: str, numerator: int, denominator: int, value: float
) -> None:
    figure = report.figures[code]
    assert figure.month == "2026-10"
    assert figure.months["2026-10"] == (numerator, denominator)
    assert figure.actual == pytest.approx(value)
    assert [month for month, _ in figure.trend()][::11] == ["2025-11", "2026-10"]


async def test_by_tier_and_segment(report: MonthReport) -> None:
    aov = report.figures["aov"]
    assert aov.by_tier == {"gold": (35_000, 2), "basic": (10_000, 1)}
    assert aov.by_segment == {"core": (35_000, 2), "dormant": (10_000, 1)}
    repurchase = report.figures["repurchase_12m"]
    assert repurchase.by_tier == {"gold": (1, 1), "basic": (2, 4), "silver": (1, 1)}
    # Ratings keep the tier the member had when answering.
    assert report.figures["csat"].by_tier == {"gold": (2, 2), "basic": (0, 1)}
    # September's CSAT and redemptions are September's.
    assert report.figures["csat"].months["2026-09"] == (0, 1)
    assert report.figures["points_redeemed"].months["2026-09"] == (10, 0)


async def test_cases_by_category(report: MonthReport) -> None:
    figure = report.figures["cases_in_due"]
    assert figure.extra == {"category:returns": (1, 1), "category:quality": (0, 1)}
    assert figure.by_tier == {"gold": (1, 1), "basic": (0, 1)}


async def test_breakdowns_and_the_holdout(report: MonthReport) -> None:
    use = report.figures["benefit_use"]
    assert use.extra["kind:cash_10"] == (1, 2)
    assert use.extra["reason:winback"] == (1, 2)
    assert use.extra["reason:生日礼"] == (0, 1)
    assert report.figures["winback"].extra == {"contacted": (0, 1)}
    wakeup = report.figures["wakeup"]
    assert wakeup.extra == {"contacted": (1, 1), "holdout": (0, 1)}
    assert lift(wakeup) is None  # a holdout rate of 0 gives no baseline


async def test_targets_and_deviation(report: MonthReport) -> None:
    repurchase = report.figures["repurchase_12m"]
    assert repurchase.target == 75
    assert repurchase.deviation == pytest.approx(4 / 6 * 100 - 75)
    assert repurchase.met is False
    # 客单价 up 55% on October 2025 (D's ¥100): ¥155 against ¥150.
    aov = report.figures["aov"]
    assert aov.target == pytest.approx(15_500)
    assert aov.deviation == pytest.approx(-500)
    assert aov.met is False
    # Churn down 50% on October 2025, which had no earlier buyers: no target to meet.
    assert report.figures["churn"].target is None
    assert report.figures["churn"].met is None
    assert report.figures["wakeup"].met is True  # 50% against at least 15%
    assert report.figures["follows"].target is None


# Stored figures: a month computed once is read after that; a running month for LIVE_SECONDS.


class _Statements:
    """Counts the statements an engine runs that read members' purchases."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        engine = sessions.kw["bind"]
        self.seen: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    @property
    def over_orders(self) -> int:
        return sum(1 for s in self.seen if re.search(r"\bFROM orders\b", s))


async def test_a_stored_month_is_read_not_computed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await _load(session)
        first = await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC))
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(StoredMonth))
        assert stored == 13  # the month, its trend and the month a year before: all ended
        # What is stored is what is shown: change September's 客单价 in the table.
        await session.execute(
            update(StoredFigure)
            .where(
                StoredFigure.month == "2026-09",
                StoredFigure.figure == "aov",
                StoredFigure.group == "all",
            )
            .values(numerator=12_345, denominator=1)
        )
        await session.commit()
    statements = _Statements(sessions)
    async with sessions() as session:
        again = await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC))
    assert statements.over_orders == 0
    assert again.figures["aov"].months["2026-09"] == (12_345, 1)
    for code, figure in first.figures.items():
        other = again.figures[code]
        assert (other.by_tier, other.by_segment, other.extra) == (
            figure.by_tier,
            figure.by_segment,
            figure.extra,
        ), code
        assert other.actual == figure.actual
    # refresh=True computes every month again and replaces what was stored.
    async with sessions() as session:
        fresh = await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC), refresh=True)
    assert statements.over_orders > 0
    assert fresh.figures["aov"].months["2026-09"] == first.figures["aov"].months["2026-09"]


async def test_a_running_month_is_reused_only_for_a_few_minutes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    november, now = date(2026, 11, 1), NOW.astimezone(UTC)
    async with sessions() as session:
        await _load(session)
        first = await programme_figures(session, RULES, november, now)
    assert first.figures["aov"].months["2026-11"] == (99_900, 1)  # A's ¥999 on 1 November
    statements = _Statements(sessions)
    async with sessions() as session:
        soon = await programme_figures(session, RULES, november, now + timedelta(seconds=60))
    assert statements.over_orders == 0
    assert soon.figures["aov"].months == first.figures["aov"].months
    # Later than LIVE_SECONDS, the running month alone is computed again, with what is new.
    later = now + timedelta(seconds=LIVE_SECONDS + 1)
    async with sessions() as session:
        a = await session.scalar(select(Member).where(Member.name == "A"))
        assert a is not None
        session.add(_order(a, local(2026, 11, 20, 12, 1), 1))
        await session.commit()
        refreshed = await programme_figures(session, RULES, november, later)
        months = dict((await session.execute(select(StoredMonth.month, StoredMonth.final))).all())
    assert statements.over_orders > 0
    assert refreshed.figures["aov"].months["2026-11"] == (100_000, 2)
    assert refreshed.figures["aov"].months["2026-10"] == first.figures["aov"].months["2026-10"]
    assert months["2026-11"] is False
    assert months["2026-10"] is True


async def test_a_trend_month_gets_its_breakdowns_when_it_is_reported(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await _load(session)
        # November's report stores October as part of its trend, without breakdowns.
        await programme_figures(
            session, RULES, date(2026, 11, 1), local(2026, 12, 5).astimezone(UTC)
        )
        october = await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC))
    assert october.figures["benefit_use"].extra["kind:cash_10"] == (1, 2)
    assert october.figures["wakeup"].extra == {"contacted": (1, 1), "holdout": (0, 1)}
    assert october.figures["repurchase_12m"].months["2026-10"] == (4, 6)
    async with sessions() as session:
        again = await programme_figures(session, RULES, MONTH, NOW.astimezone(UTC))
    assert again.figures["wakeup"].extra == october.figures["wakeup"].extra


async def test_months_computed_together_equal_each_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The trailing windows of 13 months share one pass; each month alone gives the same."""
    now = NOW.astimezone(UTC)
    months = [MONTH - relativedelta(months=n) for n in range(12, -1, -1)] + [date(2026, 11, 1)]
    async with sessions() as session:
        await _load(session)
        together = await _compute(session, RULES, months, now)
        for month in months:
            key = f"{month:%Y-%m}"
            alone = await _compute(session, RULES, [month], now)
            assert alone[key] == together[key], key
