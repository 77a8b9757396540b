"""The set-based benefit rules at scale on PostgreSQL: each rule's run time.

    python bench/benefits.py --members 5000         # a quick check (seconds)
    python bench/benefits.py                        # 1,000,000 members
    python bench/benefits.py --rule profile_survey  # one rule (the others: see --help)
    python bench/benefits.py --statements           # and where each rule's time goes
    python bench/benefits.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot_test

Without --url it starts a throwaway cluster (bench/pg.py; 2 GB of shared buffers, as a server
for a million members would have), applies the migrations, seeds the
members with bench/seed_members.py and shapes them in a few statements: tiers (60% basic, 25%
silver, 10% gold, 5% diamond), birthdays spread over the year, half with a name, joined over
the last two years, 10% at risk and 10% dormant (entered today), 5% with a survey answer this
month. Then each set-based rule runs once, timed on its own, as its job runs it (grants,
coupons, ledger entries and lots, pushes: INSERT … SELECT, one batch of members per
transaction); pushes are planned in the database and counted, not sent. A second run of each
shows the rerun issues nothing. The goal is under 60 s per rule at 1,000,000 members. Then
the ledger check (balance = ledger sum = lots remaining for every member): exit 1 if any disagree.
``--statements`` adds, per run, the statements that took the most time (by their first words).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pg
import seed_members
from sqlalchemy import event, text

from bot.database import create_engine, create_sessionmaker
from bot.migrate import upgrade
from bot.push.outbox import Outbox
from models.ledger import verify_ledger
from models.rules import ProgrammeRules
from scheduler import benefit_jobs

# 1 December 2026, 10:30 in Shanghai: the 1st (the monthly rule) and a birthday for 1/365.
NOW = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)

SHAPE = [
    """UPDATE members SET
         tier = CASE WHEN id % 20 = 0 THEN 'diamond' WHEN id % 10 = 1 THEN 'gold'
                     WHEN id % 4 = 2 THEN 'silver' ELSE 'basic' END,
         birthday = DATE '1990-01-01' + (id % 365)::int,
         name = CASE WHEN id % 2 = 0 THEN 'M' || id END,
         created_at = TIMESTAMPTZ '2026-12-01 02:00+00' - ((id % 730) || ' days')::interval,
         segment = CASE WHEN id % 10 = 3 THEN 'at_risk' WHEN id % 10 = 7 THEN 'dormant'
                        ELSE 'other' END,
         segment_since = TIMESTAMPTZ '2026-11-30 19:00+00'""",
    """INSERT INTO ratings (question_id, member_id, kind, score, context, tier, asked_at,
                            answered_at)
       SELECT 'bench-' || id, id, 'csat', 5, 'order', tier,
              TIMESTAMPTZ '2026-12-01 01:00+00', TIMESTAMPTZ '2026-12-01 01:00+00'
       FROM members WHERE id % 20 = 5""",
    "VACUUM ANALYZE",
]


class CountingOutbox(Outbox):
    """Counts the pushes a run would put on the stream (no Redis)."""

    def __init__(self) -> None:
        self.count = 0

    async def enqueue(self, delivery_ids: Iterable[int], at: datetime | None = None) -> None:
        self.count += len(list(delivery_ids))


SERVER_SETTINGS = "-c shared_buffers=2GB -c maintenance_work_mem=256MB"


@contextlib.contextmanager
def _cluster(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    # Sized as a server holding a million members would be: with PostgreSQL's default 128 MB
    # of shared buffers, the members' and the new rows' pages no longer fit once the coupon
    # rules have run, and the points rule after them took 93-102 s instead of 42-59 s.
    os.environ.setdefault("BOT_PG_OPTIONS", SERVER_SETTINGS)
    process, started = pg.start()
    try:
        yield started
    finally:
        pg.stop(process)


async def shape(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for statement in SHAPE:
            await connection.execute(text(statement))
    await engine.dispose()


JOBS = {
    "monthly_tier": benefit_jobs.plan_monthly_tier,
    "birthday": benefit_jobs.plan_birthdays,
    "segment_entered": benefit_jobs.plan_segment_entered,
    "anniversary": benefit_jobs.plan_anniversaries,
    "profile_survey": benefit_jobs.plan_behaviour_points,
}


class StatementClock:
    """Time spent in each kind of statement (its first words), from the engine's events."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def attach(self, engine: object) -> None:
        """Listen to ``engine`` (a sync Engine) for every statement it runs."""
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: object, _cursor: object, *_args: object) -> None:
        conn.info["bench_started"] = time.perf_counter()  # type: ignore[attr-defined]

    def _after(self, conn: object, _cursor: object, statement: str, *_args: object) -> None:
        started = conn.info.pop("bench_started", None)  # type: ignore[attr-defined]
        if started is None:
            return
        shape = " ".join(statement.split()[:4])[:60]
        self.seconds[shape] += time.perf_counter() - started
        self.calls[shape] += 1

    def report(self) -> None:
        """Print the statements by time spent, then forget them."""
        for shape, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:8]:
            print(f"    {seconds:7.2f} s {self.calls[shape]:>6} x  {shape}")
        self.seconds.clear()
        self.calls.clear()


async def run(url: str, names: list[str], statements: bool) -> tuple[bool, bool]:
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    clock = StatementClock()
    if statements:
        clock.attach(engine.sync_engine)
    rules = ProgrammeRules()
    met = True
    for name in names:
        for attempt in ("first", "rerun"):
            outbox = CountingOutbox()
            started = time.perf_counter()
            pushes = await JOBS[name](sessions, outbox, rules, NOW)
            seconds = time.perf_counter() - started
            print(f"{name:18} {attempt:5}: {pushes:>9,} pushes in {seconds:7.2f} s", flush=True)
            if statements:
                clock.report()
            met = met and (attempt == "rerun" or seconds < 60)
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT rule, count(*) FILTER (WHERE NOT holdout), count(*) FILTER (WHERE holdout)"
                " FROM benefit_grants GROUP BY rule ORDER BY rule"
            )
        )
        for rule, given, held in rows:
            print(f"  {rule:16} granted {given:>9,}  held out {held:>7,}")
        coupons = await connection.scalar(text("SELECT count(*) FROM coupons"))
        lots = await connection.scalar(text("SELECT count(*) FROM point_lots"))
        print(f"  coupons {coupons:,}, point lots {lots:,}")
    async with sessions() as session:
        started = time.perf_counter()
        mismatches = [m async for m in verify_ledger(session)]
        seconds = time.perf_counter() - started
    print(f"ledger check ({seconds:.1f} s): {len(mismatches):,} members disagree", flush=True)
    await engine.dispose()
    return met, not mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--url", help="an existing, empty PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument(
        "--rule", choices=list(JOBS), action="append", help="only this rule (repeatable)"
    )
    parser.add_argument(
        "--statements", action="store_true", help="the slowest statements of each run"
    )
    args = parser.parse_args()
    with _cluster(args.url) as url:
        load1, _, _ = os.getloadavg()
        print(f"benefits bench: members={args.members:,} (load average {load1:.2f})", flush=True)
        upgrade(url)
        started = time.perf_counter()
        asyncio.run(seed_members.seed(args.members, url))
        asyncio.run(shape(url))
        print(f"seeded and shaped in {time.perf_counter() - started:.1f} s", flush=True)
        met, consistent = asyncio.run(run(url, args.rule or list(JOBS), args.statements))
        print("goal (< 60 s per rule): " + ("met" if met else "MISSED"))
    if not consistent:
        sys.exit(1)


if __name__ == "__main__":
    main()
