"""Programme jobs that run over all members, from the CLI and on the scheduler's clock.

Each job is set-based SQL over the whole programme (or planned pushes written in batches) and
is safe to run again: it only does what is due, and a push is planned once per period.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dateutil.relativedelta import relativedelta
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from bot.report import write_report
from models.benefits.upgrade import upgrade_gifts
from models.coupons import expire_coupons
from models.deliveries import Delivery
from models.figures import programme_figures
from models.follow_ups import plan_calls
from models.hooks import KEPT, prune
from models.ledger import expire_due_lots
from models.member_codes import forget_spent_codes
from models.members import Member
from models.referrals import Referral, due_referrals, settle
from models.rules import ProgrammeRules
from models.segments import refresh_segments
from models.tier_review import reevaluate_tiers
from scheduler.benefit_jobs import (
    plan_anniversaries,
    plan_behaviour_points,
    plan_birthdays,
    plan_monthly_tier,
    plan_segment_entered,
)
from scheduler.coupon_reminders import plan_coupon_reminders
from scheduler.rating_questions import plan_nps_sample
from scheduler.recap_push import plan_recaps
from scheduler.scheduled_pushes import (
    plan_expiry_reminders,
    plan_holiday_greetings,
    plan_tier_keeping,
)


@dataclass(frozen=True)
class JobContext:
    """What a job runs with: the database, the programme's rules, the outbox for pushes, and
    the time it runs for (the scheduled time, or the clock's for a manual run)."""

    sessions: async_sessionmaker[AsyncSession]
    rules: ProgrammeRules
    outbox: Outbox
    now: datetime


JobFunction = Callable[[JobContext], Awaitable[str]]


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    run: JobFunction


async def _expire_points(ctx: JobContext) -> str:
    async with ctx.sessions() as session:
        points = await expire_due_lots(session, ctx.now)
    return f"{points} points expired"


async def _expire_coupons(ctx: JobContext) -> str:
    async with ctx.sessions.begin() as session:
        count = await expire_coupons(session, ctx.now)
    return f"{count} coupons marked expired"


async def _reevaluate_tiers(ctx: JobContext) -> str:
    async with ctx.sessions() as session:
        review = await reevaluate_tiers(
            session, ctx.rules, ctx.now, gifts=upgrade_gifts(session, ctx.rules, ctx.now)
        )  # commits per batch
    return (
        f"{review.evaluated} members: {review.upgraded} up, {review.downgraded} down, "
        f"top-spender threshold {review.top_spend_threshold_fen} fen"
    )


async def _refresh_segments(ctx: JobContext) -> str:
    async with ctx.sessions() as session:
        counts = await refresh_segments(session, ctx.rules, ctx.now)  # commits per batch
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


Planner = Callable[
    [async_sessionmaker[AsyncSession], Outbox, ProgrammeRules, datetime], Awaitable[int]
]


def _pushes(planner: Planner, what: str) -> JobFunction:
    """A job that runs a push planner and says how many pushes it planned."""

    async def run(ctx: JobContext) -> str:
        planned = await planner(ctx.sessions, ctx.outbox, ctx.rules, ctx.now)
        return f"{planned} {what} planned"

    return run


async def _referral_rewards(ctx: JobContext) -> str:
    """Settle each due referral in its own transaction (a few a day per referrer at most: the
    daily cap bounds them), each row locked so two runs never settle one twice."""
    counts: Counter[str] = Counter()
    while True:
        async with ctx.sessions() as session:
            due = await due_referrals(session, ctx.now, limit=500)
        if not due:
            break
        for referral_id in due:
            async with ctx.sessions.begin() as session:
                referral = await session.get(Referral, referral_id, with_for_update=True)
                if referral is not None and referral.status == "pending":
                    counts[await settle(session, ctx.rules, referral, ctx.now)] += 1
    shown = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "none due"
    return f"referrals settled: {shown}"


async def _callbacks(ctx: JobContext) -> str:
    async with ctx.sessions.begin() as session:
        planned = await plan_calls(session, ctx.rules, ctx.now)
    return ", ".join(f"{purpose} {count}" for purpose, count in planned.items()) + " planned"


async def _prune_events(ctx: JobContext) -> str:
    async with ctx.sessions() as session:
        hooks, events = await prune(session, ctx.now - KEPT)  # commits per batch
    async with ctx.sessions.begin() as session:
        codes = await forget_spent_codes(session, ctx.now - KEPT)
    return (
        f"{hooks} shop-event deliveries and {events} member events older than 30 days deleted, "
        f"{codes} spent member codes forgotten"
    )


async def _monthly_report(ctx: JobContext) -> str:
    """Last month's 《效果跟踪表》 into ``reports_folder``: run on the 1st, it reports the
    month that just ended (run on any other day, the last month that has ended)."""
    today = ctx.now.astimezone(ctx.rules.zone).date()
    month = today.replace(day=1) - relativedelta(months=1)
    async with ctx.sessions() as session:
        report = await programme_figures(session, ctx.rules, month, ctx.now)
    html, csv = write_report(report, ctx.rules, Path(ctx.rules.reports_folder), ctx.now)
    return f"{month:%Y-%m} written to {html} and {csv}"


JOBS = {
    job.name: job
    for job in (
        Job("expire-points", "expire point lots that are due, set-based", _expire_points),
        Job("expire-coupons", "mark coupons past their validity as expired", _expire_coupons),
        Job(
            "reevaluate-tiers",
            "re-evaluate every member's tier (downgrades happen only here)",
            _reevaluate_tiers,
        ),
        Job("refresh-segments", "recompute every member's RFM segment", _refresh_segments),
        Job(
            "expiry-reminders",
            "remind members of points expiring in 30 and 7 days (push)",
            _pushes(plan_expiry_reminders, "expiry reminders"),
        ),
        Job(
            "coupon-reminders",
            "remind members once of unused coupons expiring within 3 days (push)",
            _pushes(plan_coupon_reminders, "coupon reminders"),
        ),
        Job(
            "birthdays",
            "birthday greeting and the tier's birthday coupon, on the local day (push)",
            _pushes(plan_birthdays, "birthday greetings"),
        ),
        Job(
            "holiday-greetings",
            "greet followers on a holiday's first day or a brand day (marketing push)",
            _pushes(plan_holiday_greetings, "holiday greetings"),
        ),
        Job(
            "winback",
            "segment entered: at-risk and dormant gifts once per entry, holdout kept (push)",
            _pushes(plan_segment_entered, "win-back gifts"),
        ),
        Job(
            "monthly-tier-benefits",
            "each tier's monthly coupon, on the 1st, set-based (push)",
            _pushes(plan_monthly_tier, "monthly tier gifts"),
        ),
        Job(
            "anniversaries",
            "membership anniversary gift, on the local day (push)",
            _pushes(plan_anniversaries, "anniversary gifts"),
        ),
        Job(
            "behaviour-points",
            "points for a completed profile (once) and a survey answer (monthly) (push)",
            _pushes(plan_behaviour_points, "behaviour-points notices"),
        ),
        Job(
            "tier-keeping",
            "30 days before the re-evaluation: what keeps each member's tier (push)",
            _pushes(plan_tier_keeping, "tier-keeping reminders"),
        ),
        Job(
            "referral-rewards",
            "reward referrals whose friend's first order passed the return window",
            _referral_rewards,
        ),
        Job(
            "nps-sample",
            "ask this month's sample of members the NPS question (survey push)",
            _pushes(plan_nps_sample, "NPS questions"),
        ),
        Job(
            "callbacks",
            "put this month's at-risk and this quarter's high-ticket calls on the work list",
            _callbacks,
        ),
        Job(
            "prune-events",
            "delete member events and shop-event deliveries acted on over 30 days ago",
            _prune_events,
        ),
        Job(
            "monthly-report",
            "last month's 《效果跟踪表》 (HTML and CSV) into [programme] reports_folder",
            _monthly_report,
        ),
        Job(
            "annual-recap",
            "last year's recap page per active member, and its link (marketing push)",
            _pushes(plan_recaps, "annual recaps"),
        ),
    )
}


class _RecordingOutbox(Outbox):
    """An outbox that only remembers what it was given (a dry run sends nothing)."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    async def enqueue(self, delivery_ids: Iterable[int], at: datetime | None = None) -> None:
        self.ids.extend(delivery_ids)


@dataclass(frozen=True)
class DryRun:
    """What a job would do: its outcome, the pushes it would plan and a sample of them."""

    outcome: str
    planned: int
    sample: list[tuple[str | None, str]]  # (openid, text)


async def dry_run(
    job: Job,
    engine: AsyncEngine,
    rules: ProgrammeRules,
    now: datetime,
    sample: int = 5,
) -> DryRun:
    """Run ``job`` for real inside one transaction, read what it planned, then roll it all
    back: the audience and copy are exactly those of a real run, and nothing is kept or sent."""
    async with engine.connect() as connection:
        outer = await connection.begin()
        try:
            # The job's own commits leave the outer transaction open; only it decides.
            sessions = async_sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="rollback_only"
            )
            outbox = _RecordingOutbox()
            outcome = await job.run(JobContext(sessions, rules, outbox, now))
            rows = await connection.execute(
                select(Member.openid, Delivery.payload)
                .select_from(Delivery)
                .join(Member, Member.id == Delivery.member_id)
                .where(Delivery.id.in_(outbox.ids[:sample]))
                .order_by(Delivery.id)
            )
            shown = [(openid, str(payload.get("text", ""))) for openid, payload in rows]
            return DryRun(outcome, len(outbox.ids), shown)
        finally:
            await outer.rollback()
