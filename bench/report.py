"""A whole month's 《效果跟踪表》 (every programme figure with its 12-month trend, by tier and
segment, charts, HTML and CSV) on a large demo brand in PostgreSQL. Goal: under 30 s at
1,000,000 members.

    python bench/report.py --fast-seed           # 1,000,000 members loaded by SQL: ~5 min
    python bench/report.py                       # 1,000,000 demo members: a long load first
    python bench/report.py --members 20000       # a quick check
    python bench/report.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot --no-load

With ``--fast-seed`` the brand is loaded by set-based SQL (bench/fastseed.py: a million
members in a few minutes); otherwise it is ``python -m bot demo --members N``'s (bot/demo.py:
about 3.8 orders a member over 18 months, ledger, ratings, referrals, a campaign, coupons,
conversations), which holds what it generates in memory while loading (a few GB at a million
members). With ``--url --no-load`` any loaded database can be measured instead, e.g.
bench/dashboard.py's (``--keep`` leaves its cluster running).

Last month's report (figures, charts, HTML and CSV) is built three times each: with nothing
stored (``refresh``: every month of the trend computed), in the steady state (only the month
itself not stored yet) and with every month stored; then the console dashboard's work for
this month (less the template), the first view and repeat views. Best and worst are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fastseed  # noqa: E402  (bench/fastseed.py: the set-based loader)
import ledger  # noqa: E402  (bench/ledger.py: the PostgreSQL cluster)
from sqlalchemy import delete, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.database import create_engine, create_sessionmaker  # noqa: E402
from bot.demo import load_demo  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.report import figure_views, render_csv, render_html  # noqa: E402
from models.coupons import coupon_stats  # noqa: E402
from models.dashboard import members_by, pushes_by_purpose, referral_funnel  # noqa: E402
from models.figures import StoredFigure, StoredMonth, programme_figures  # noqa: E402
from models.members import Member  # noqa: E402
from models.orders import Order  # noqa: E402
from models.rules import ProgrammeRules  # noqa: E402

GOAL_SECONDS = 30.0
RUNS = 3


async def load(url: str, members: int) -> None:
    engine = create_engine(url)
    started = time.perf_counter()
    await load_demo(create_sessionmaker(engine), ProgrammeRules(), if_empty=False, members=members)
    print(f"demo brand loaded: {time.perf_counter() - started:.0f} s", flush=True)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
    await engine.dispose()


async def load_fast(url: str, members: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    took = await fastseed.fast_seed(dsn, members, datetime.now(UTC))
    print(f"fast seed loaded: {took:.0f} s", flush=True)


async def _timed(label: str, runs: int, work: Callable[[], Awaitable[object]]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    print(f"  {label}: best {min(times):.2f} s, worst {max(times):.2f} s", flush=True)
    return times


async def measure(url: str) -> float:
    """Last month's whole report: with nothing stored (every month of its trend computed),
    in the steady state (the months before it stored by earlier reports, the month itself
    computed), and with everything stored; then the console dashboard's work for this
    month, first view (nothing stored) and a repeat view. Returns the worst whole report
    with nothing stored."""
    rules = ProgrammeRules()
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    today = now.astimezone(rules.zone).date()
    month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    async with sessions() as session:
        members = await session.scalar(select(func.count()).select_from(Member))
        orders = await session.scalar(select(func.count()).select_from(Order))
    print(f"{members:,} members, {orders:,} orders; report for {month:%Y-%m}", flush=True)
    sizes: list[int] = []

    async def report(refresh: bool = False) -> None:
        async with sessions() as session:
            figures = await programme_figures(session, rules, month, now, refresh=refresh)
        html, csv = render_html(figures, rules, now), render_csv(figures)
        sizes[:] = [len(html), len(csv.splitlines())]

    async def forget(*months: date) -> None:
        async with sessions() as session:
            keys = [f"{m:%Y-%m}" for m in months]
            await session.execute(delete(StoredMonth).where(StoredMonth.month.in_(keys)))
            await session.execute(delete(StoredFigure).where(StoredFigure.month.in_(keys)))
            await session.commit()

    async def steady() -> None:
        await forget(month)
        await report()

    async def dashboard(cold: bool = False, expired: bool = False) -> None:
        if cold:
            async with sessions() as session:
                await session.execute(delete(StoredMonth))
                await session.execute(delete(StoredFigure))
                await session.commit()
        if expired:  # the month so far is older than LIVE_SECONDS: computed again
            await forget(today.replace(day=1))
        # What GET /console/dashboard does (bot/console/campaign_views.py), less the template.
        async with sessions() as db:
            figures = await programme_figures(db, rules, today.replace(day=1), now)
            await members_by(db, "tier")
            await members_by(db, "segment")
            await coupon_stats(db)
            await referral_funnel(db)
            await pushes_by_purpose(db, now - timedelta(days=30))
        figure_views(figures, rules)

    cold = await _timed("whole report, nothing stored", RUNS, lambda: report(refresh=True))
    await _timed("whole report, earlier months stored (steady state)", RUNS, steady)
    await _timed("whole report, every month stored", RUNS, report)
    print(f"  sizes: HTML {sizes[0] / 1024:.0f} KiB, CSV {sizes[1]:,} rows")
    await _timed("dashboard, first view (nothing stored)", 1, lambda: dashboard(cold=True))
    await _timed("dashboard, repeat view", RUNS, dashboard)
    await _timed(
        "dashboard, first view after 5 minutes (past months stored)",
        RUNS,
        lambda: dashboard(expired=True),
    )
    await engine.dispose()
    worst = max(cold)
    verdict = "ok" if worst < GOAL_SECONDS else f"OVER the {GOAL_SECONDS:.0f} s goal"
    print(f"  whole report with nothing stored, worst {worst:.2f} s  [{verdict}]")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument("--no-load", action="store_true", help="with --url: the data is there")
    parser.add_argument(
        "--fast-seed", action="store_true", help="load with set-based SQL (bench/fastseed.py)"
    )
    args = parser.parse_args()
    if args.no_load and not args.url:
        parser.error("--no-load needs --url")
    with ledger._cluster(args) as url:
        load1, _, _ = os.getloadavg()
        print(f"report bench: members={args.members:,} (load average {load1:.2f})", flush=True)
        upgrade(url)
        if args.fast_seed and not args.no_load:
            asyncio.run(load_fast(url, args.members))
        elif not args.no_load:
            asyncio.run(load(url, args.members))
        asyncio.run(measure(url))


if __name__ == "__main__":
    main()
