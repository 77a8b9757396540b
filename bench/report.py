"""A whole month's 《效果跟踪表》 (every programme figure with its 12-month trend, by tier and
segment, charts, HTML and CSV) on a large demo brand in PostgreSQL. Goal: under 30 s at
1,000,000 members.

    python bench/report.py                       # 1,000,000 demo members: a long load first
    python bench/report.py --members 20000       # a quick check
    python bench/report.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot --no-load

The data is ``python -m bot demo --members N``'s brand (bot/demo.py: about 3.8 orders a member
over 18 months, ledger, ratings, referrals, a campaign, coupons, conversations). The demo
holds what it generates in memory while loading (a few GB at a million members); with
``--url --no-load`` any loaded database can be measured instead, e.g. bench/dashboard.py's
(``--keep`` leaves its cluster running). Last month's report is built three times; the
figures, the rendering and the total are printed, best and worst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ledger  # noqa: E402  (bench/ledger.py: the PostgreSQL cluster)
from sqlalchemy import func, select, text  # noqa: E402

from bot.database import create_engine, create_sessionmaker  # noqa: E402
from bot.demo import load_demo  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.report import render_csv, render_html  # noqa: E402
from models.figures import programme_figures  # noqa: E402
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


async def measure(url: str) -> float:
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
    totals, figures_times, render_times = [], [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        async with sessions() as session:
            report = await programme_figures(session, rules, month, now)
        computed = time.perf_counter()
        html, csv = render_html(report, rules, now), render_csv(report)
        done = time.perf_counter()
        figures_times.append(computed - started)
        render_times.append(done - computed)
        totals.append(done - started)
    await engine.dispose()
    for label, times in (("figures (SQL)", figures_times), ("charts, HTML, CSV", render_times)):
        print(f"  {label}: best {min(times):.2f} s, worst {max(times):.2f} s")
    worst = max(totals)
    verdict = "ok" if worst < GOAL_SECONDS else f"OVER the {GOAL_SECONDS:.0f} s goal"
    print(f"  whole report: best {min(totals):.2f} s, worst {worst:.2f} s  [{verdict}]")
    print(f"  sizes: HTML {len(html) / 1024:.0f} KiB, CSV {len(csv.splitlines()):,} rows")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument("--no-load", action="store_true", help="with --url: the data is there")
    args = parser.parse_args()
    if args.no_load and not args.url:
        parser.error("--no-load needs --url")
    with ledger._cluster(args) as url:
        load1, _, _ = os.getloadavg()
        print(f"report bench: members={args.members:,} (load average {load1:.2f})", flush=True)
        upgrade(url)
        if not args.no_load:
            asyncio.run(load(url, args.members))
        asyncio.run(measure(url))


if __name__ == "__main__":
    main()
