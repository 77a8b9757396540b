"""Ledger jobs at scale on PostgreSQL: points expiry, tier re-evaluation, segments, verify.

    python bench/ledger.py --members 50000            # a quick check (about 20 s)
    python bench/ledger.py                            # 1,000,000 members: about 7 minutes
    python bench/ledger.py --keep                     # leave the cluster running, print its URL
    python bench/ledger.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot_test --no-load

Without --url it starts a throwaway cluster (bench/pg.py, i.e. tests/services.py's
postgres_cluster(): fsync off, otherwise PostgreSQL's default settings). It applies the
migrations, then bulk-loads a programme's worth of data with COPY, generated in chunks of
members so memory stays bounded:

- members, each with a tier roughly matching their purchases (some a level too high, so the
  re-evaluation has downgrades to make) and ``points_balance`` = what their lots hold;
- orders (3 per member on average, heavy-tailed) over the last 18 months, log-normal amounts,
  4% refunded in part or in full;
- point lots over the last 14 months, one ``earn`` ledger entry each: one per order of those
  months (points = yuan) plus activity points, ~5 per member; expiry as the service computes it
  (end of the day 12 months on), so about 12% of the open lots are already due (2 of the 14
  months, less what redemptions took first);
- ``refund`` entries taking back a refunded order's points from its lot, and for a third of
  the members one ``redeem`` entry that consumed their oldest lots first (FIFO), before any of
  them had expired — so balance == ledger sum == lots remaining for everyone.

Rows reach the tables in time order with ids in time order, as in production (COPY into
unlogged staging tables, then INSERT … SELECT … ORDER BY time), so a member's lots are spread
over the table rather than side by side. Then VACUUM ANALYZE, and each job is timed on its own:
``expire_due_lots``, ``reevaluate_tiers``, ``refresh_segments`` and ``verify_ledger``. The goal
for each is under 60 s at 1,000,000 members on the 2-core machine.

Last, the points query through the webhook (``points_query``): a real server on this database
answers 积分 from 30,000 members at concurrency 32, each member twice: the first ask reads
PostgreSQL, the second is served from the Redis points cache (bot/wechat/points_cache.py). The goal
is p99 under 20 ms. Prints figures; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from dateutil.relativedelta import relativedelta  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import pg  # noqa: E402
from bot.database import create_engine, create_sessionmaker  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from models.ledger import PointLot, expire_due_lots, verify_ledger  # noqa: E402
from models.members import Member  # noqa: E402
from models.orders import lot_expiry  # noqa: E402
from models.rules import ProgrammeRules  # noqa: E402
from models.segments import refresh_segments  # noqa: E402
from models.tier_review import reevaluate_tiers  # noqa: E402
from models.tiers import window_start  # noqa: E402

GOAL_S = 60.0
POINTS_CONCURRENCY = 32
CHUNK = 20_000  # members generated and copied at a time
DAY = 86_400
CHANNELS = ("miniprogram", "store", "store", "tmall", "jd")
CATEGORIES = ("apparel", "shoes", "beauty", "home", "food", None)
ACTIVITY_POINTS = (5, 10, 10, 20, 50, 100, 200)
VIP_SHARE, VIP_FACTOR = 0.02, 10

STAGING = {
    "bench_members": (
        "id bigint, openid text, subscribed boolean, subscribed_ts bigint, "
        "unsubscribed_ts bigint, last_ts bigint, created_ts bigint, balance bigint, "
        "tier text, tier_since_ts bigint, birthday_days int"
    ),
    "bench_orders": (
        "shop_order_id text, member_id bigint, amount_fen bigint, refunded_fen bigint, "
        "paid_ts bigint, channel text, category text, points_earned bigint, "
        "points_reversed bigint"
    ),
    "bench_entries": (
        "member_id bigint, n int, kind text, points bigint, balance_after bigint, "
        "reason text, key text, shop_order_id text, ts bigint"
    ),
    "bench_lots": (
        "member_id bigint, entry_key text, amount bigint, remaining bigint, "
        "earned_ts bigint, expires_ts bigint"
    ),
}

# Staging to the real tables: in time order, so ids (from the sequences) follow time.
FINAL = [
    (
        "members",
        """INSERT INTO members (id, openid, subscribed, subscribed_at, unsubscribed_at,
               last_interaction_at, created_at, points_balance, tier, tier_since, birthday, tags)
           SELECT id, openid, subscribed, to_timestamp(subscribed_ts),
               to_timestamp(unsubscribed_ts), to_timestamp(last_ts), to_timestamp(created_ts),
               balance, tier, to_timestamp(tier_since_ts), date '1970-01-01' + birthday_days,
               '[]'
           FROM bench_members ORDER BY id""",
    ),
    (
        "orders",
        """INSERT INTO orders (shop_order_id, member_id, amount_fen, refunded_fen, paid_at,
               channel, category, points_earned, points_reversed, fingerprint, created_at)
           SELECT shop_order_id, member_id, amount_fen, refunded_fen, to_timestamp(paid_ts),
               channel, category, points_earned, points_reversed,
               encode(sha256(convert_to(shop_order_id, 'UTF8')), 'hex'),
               to_timestamp(paid_ts + 2)
           FROM bench_orders ORDER BY paid_ts, shop_order_id""",
    ),
    (
        "ledger_entries",
        """INSERT INTO ledger_entries (member_id, kind, points, balance_after, reason,
               idempotency_key, order_id, created_at)
           SELECT e.member_id, e.kind, e.points, e.balance_after, e.reason, e.key, o.id,
               to_timestamp(e.ts)
           FROM bench_entries e LEFT JOIN orders o ON o.shop_order_id = e.shop_order_id
           ORDER BY e.ts, e.member_id, e.n""",
    ),
    (
        "point_lots",
        """INSERT INTO point_lots (member_id, entry_id, order_id, amount, remaining, earned_at,
               expires_at, expired_points)
           SELECT l.member_id, e.id, e.order_id, l.amount, l.remaining,
               to_timestamp(l.earned_ts), to_timestamp(l.expires_ts), 0
           FROM bench_lots l JOIN ledger_entries e ON e.idempotency_key = l.entry_key
           ORDER BY e.id""",
    ),
]


@dataclass
class Chunk:
    members: list[tuple[Any, ...]] = field(default_factory=list)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    lots: list[tuple[Any, ...]] = field(default_factory=list)


class Generator:
    """Members with consistent orders, lots and ledger entries, ``CHUNK`` members at a time."""

    def __init__(
        self,
        rules: ProgrammeRules,
        now: datetime,
        orders_per_member: float,
        lots_per_member: float,
        seed: int,
    ) -> None:
        self.rules = rules
        self.rng = random.Random(seed)
        self.now_ts = int(now.timestamp())
        self.order_start = int((now - relativedelta(months=18)).timestamp())
        self.lot_start = int((now - relativedelta(months=14)).timestamp())
        self.window_ts = int(window_start(rules, now).timestamp())
        # Geometric counts (floor of an exponential): mean m needs rate log(1 + 1/m). 2% of the
        # members are big spenders (10x the orders, ¥1,500 orders), the rest share the others.
        regular = orders_per_member * (1 - VIP_SHARE * VIP_FACTOR) / (1 - VIP_SHARE)
        self.order_rate = math.log(1 + 1 / regular) if regular > 0 else 0.0
        self.vip_rate = (
            math.log(1 + 1 / (orders_per_member * VIP_FACTOR)) if orders_per_member > 0 else 0.0
        )
        recent = orders_per_member * (self.now_ts - self.lot_start)
        extra = lots_per_member - recent / (self.now_ts - self.order_start)
        self.extra_rate = math.log(1 + 1 / extra) if extra > 0 else 0.0
        self.tiers = [(t.code, t.min_orders, t.min_spend_fen) for t in rules.tiers]
        self._expiry: dict[int, int] = {}

    def expires(self, earned_ts: int) -> int:
        """``lot_expiry`` (end of the local day, 12 months on), cached per quarter hour."""
        key = earned_ts // 900
        found = self._expiry.get(key)
        if found is None:
            at = datetime.fromtimestamp(key * 900, UTC)
            found = self._expiry[key] = int(lot_expiry(self.rules, at).timestamp())
        return found

    def tier_index(self, orders: int, spend: int) -> int:
        best = 0
        for i, (_code, min_orders, min_spend) in enumerate(self.tiers):
            if orders >= min_orders or (min_spend is not None and spend >= min_spend):
                best = i
        return best

    def chunk(self, first: int, last: int) -> Chunk:
        rng = self.rng
        rand, expo, lognorm, choice = rng.random, rng.expovariate, rng.lognormvariate, rng.choice
        now_ts, lot_start, window_ts = self.now_ts, self.lot_start, self.window_ts
        order_span, lot_span = now_ts - self.order_start, now_ts - lot_start
        order_rate, extra_rate = self.order_rate, self.extra_rate
        out = Chunk()
        add_order, add_entry, add_lot = out.orders.append, out.entries.append, out.lots.append
        mu, vip_mu = math.log(12_000), math.log(150_000)  # median orders ¥120, ¥1,500
        vip_rate = self.vip_rate
        for m in range(first, last + 1):
            vip = rand() < VIP_SHARE
            rate, median = (vip_rate, vip_mu) if vip else (order_rate, mu)
            n_orders = int(expo(rate)) if rate else 0
            n_extra = int(expo(extra_rate)) if extra_rate else 0
            events: list[tuple[int, str, int, str, str, str | None]] = []
            lots: list[list[Any]] = []  # [earned_ts, amount, remaining, key]
            w_orders = w_spend = 0
            first_ts, last_ts = now_ts, 0
            for k in range(n_orders):
                ts = now_ts - int(rand() * order_span)
                amount = min(max(100, int(lognorm(median, 0.9))), 5_000_000)
                shop = f"B{m}-{k}"
                r = rand()
                refunded = amount if r < 0.02 else int(amount * rand()) if r < 0.04 else 0
                points = amount // 100
                taken = points * refunded // amount
                channel, category = choice(CHANNELS), choice(CATEGORIES)
                add_order((shop, m, amount, refunded, ts, channel, category, points, taken))
                if ts > window_ts and amount > refunded:
                    w_orders += 1
                    w_spend += amount - refunded
                first_ts, last_ts = min(first_ts, ts), max(last_ts, ts)
                if ts > lot_start:
                    key = f"order:{shop}"
                    events.append((ts, "earn", points, f"订单 {shop}", key, shop))
                    lots.append([ts, points, points - taken, key])
                    if taken:
                        back = min(ts + int(rand() * 7 * DAY), now_ts - 1)
                        events.append(
                            (back, "refund", -taken, f"订单 {shop} 退款", f"refund:R{shop}", None)
                        )
            for x in range(n_extra):
                ts = now_ts - int(rand() * lot_span)
                points = choice(ACTIVITY_POINTS)
                key = f"bench:{m}:{x}"
                events.append((ts, "earn", points, "活动积分", key, None))
                lots.append([ts, points, points, key])
                first_ts, last_ts = min(first_ts, ts), max(last_ts, ts)
            if lots:
                lots.sort()
                if rand() < 0.35:
                    # A redemption before the oldest lot expired takes the oldest lots first.
                    low = lots[0][0]
                    high = min(now_ts, self.expires(low)) - 1
                    at = low + int(rand() * (high - low))
                    open_ = [lot for lot in lots if lot[0] <= at]
                    available = sum(lot[2] for lot in open_)
                    if available > 0:
                        wanted = left = max(1, int(available * (0.2 + 0.8 * rand())))
                        for lot in open_:
                            part = min(lot[2], left)
                            lot[2] -= part
                            left -= part
                            if not left:
                                break
                        events.append((at, "redeem", -wanted, "积分兑换", f"redeem:{m}", None))
                expires = self.expires
                for ts, amount, remaining, key in lots:
                    add_lot((m, key, amount, remaining, ts, expires(ts)))
                events.sort(key=lambda e: e[0])
            balance = 0
            for n, (ts, kind, points, reason, key, shop) in enumerate(events):
                balance += points
                add_entry((m, n, kind, points, balance, reason, key, shop, ts))
            assert balance == sum(lot[2] for lot in lots), m
            # The member joined before anything they did (followers who never bought: any time
            # in the last three years).
            start = first_ts if last_ts else now_ts - int(rand() * 3 * 365 * DAY)
            created = max(start - int(rand() * 180 * DAY), now_ts - 4 * 365 * DAY)
            tier = self.tier_index(w_orders, w_spend)
            if rand() < 0.15 and tier + 1 < len(self.tiers):
                tier += 1  # earned last year, not this: a downgrade for the re-evaluation
            subscribed = rand() < 0.92
            out.members.append(
                (
                    m,
                    f"o_bench_{m:08d}",
                    subscribed,
                    created,
                    None if subscribed else now_ts - int(rand() * 365 * DAY),
                    max(last_ts, created) + int(rand() * 30 * DAY) if last_ts else created,
                    created,
                    balance,
                    self.tiers[tier][0],
                    now_ts - int(rand() * 365 * DAY) if tier else None,
                    int(rand() * 16_000) - 3_600 if rand() < 0.6 else None,
                )
            )
        return out


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _timed(label: str, action: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action
    elapsed = time.perf_counter() - started
    print(f"  {label}: {elapsed:.1f} s", flush=True)
    return elapsed, result


async def load(url: str, args: argparse.Namespace, rules: ProgrammeRules) -> None:
    """Generate and COPY the data, move it to the real tables in time order, VACUUM ANALYZE."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        if await connection.fetchval("SELECT count(*) FROM members"):
            raise SystemExit("the database already holds members: use an empty one (or --no-load)")
        await connection.execute("SET work_mem = '256MB'; SET maintenance_work_mem = '1GB'")
        if await connection.fetchval("SELECT current_setting('is_superuser') = 'on'"):
            # The generator keeps the references consistent; skipping the foreign-key triggers
            # saves minutes. (verify_ledger and the jobs still see every row.)
            await connection.execute("SET session_replication_role = replica")
        for table, columns in STAGING.items():
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
            await connection.execute(f"CREATE UNLOGGED TABLE {table} ({columns})")
        started = time.perf_counter()
        generator = Generator(
            rules, datetime.now(UTC), args.orders_per_member, args.lots_per_member, args.seed
        )
        counts = dict.fromkeys(STAGING, 0)

        async def copy(chunk: Chunk) -> None:
            for table, rows in zip(
                STAGING, (chunk.members, chunk.orders, chunk.entries, chunk.lots), strict=True
            ):
                await connection.copy_records_to_table(table, records=rows)
                counts[table] += len(rows)

        # Generate the next chunk in a thread while the server takes in the last one.
        pending: asyncio.Future[None] | None = None
        for first in range(1, args.members + 1, CHUNK):
            last = min(args.members, first + CHUNK - 1)
            chunk = await asyncio.to_thread(generator.chunk, first, last)
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(copy(chunk))
            if last % 200_000 == 0:
                print(f"  {last:,} members generated", flush=True)
        if pending is not None:
            await pending
        print(
            f"  generate + COPY to staging: {time.perf_counter() - started:.1f} s "
            f"({counts['bench_members']:,} members, {counts['bench_orders']:,} orders, "
            f"{counts['bench_entries']:,} entries, {counts['bench_lots']:,} lots)",
            flush=True,
        )
        for table, statement in FINAL:
            await _timed(f"INSERT … SELECT into {table}", connection.execute(statement))
            await connection.execute(f"DROP TABLE bench_{table.split('_')[-1]}")
            await connection.fetchval(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        await connection.execute("RESET session_replication_role")
        for table in ("members", "orders", "ledger_entries", "point_lots"):
            await _timed(f"VACUUM ANALYZE {table}", connection.execute(f"VACUUM ANALYZE {table}"))
        print(f"load: {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await connection.close()


async def describe(url: str) -> None:
    """What is in the database, and how much of it is due to expire."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        sizes = await connection.fetch(
            "SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes "
            "FROM pg_stat_user_tables WHERE relname IN "
            "('members', 'orders', 'ledger_entries', 'point_lots') ORDER BY relname"
        )
        for row in sizes:
            print(
                f"  {row['relname']:<15} {row['n_live_tup']:>12,} rows "
                f"{row['bytes'] / 2**20:>8,.0f} MiB (with indexes)"
            )
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE remaining > 0) AS open, "
            "count(*) FILTER (WHERE remaining > 0 AND expires_at <= now()) AS due, "
            "coalesce(sum(remaining) FILTER (WHERE expires_at <= now()), 0) AS due_points, "
            "count(DISTINCT member_id) FILTER (WHERE remaining > 0 AND expires_at <= now()) "
            "AS due_members FROM point_lots"
        )
        share = row["due"] / row["open"] if row["open"] else 0.0
        print(
            f"  due now: {row['due']:,} of {row['open']:,} open lots ({share:.1%}), "
            f"{row['due_points']:,} points, {row['due_members']:,} members"
        )
    finally:
        await connection.close()


def _verdict(seconds: float) -> str:
    return f"goal < {GOAL_S:.0f} s: {'ok' if seconds < GOAL_S else 'OVER'}"


async def jobs(url: str) -> None:
    """Time each job in a session of its own, as the scheduler would run them."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    rules = ProgrammeRules()
    now = datetime.now(UTC)
    try:
        async with sessions() as session:
            started = time.perf_counter()
            points = await expire_due_lots(session, now)
            elapsed = time.perf_counter() - started
            lots = await session.scalar(
                select(func.count()).select_from(PointLot).where(PointLot.expired_at == now)
            )
        print(
            f"expire_due_lots: {elapsed:.1f} s ({lots:,} lots, {points:,} points)  "
            f"[{_verdict(elapsed)}]",
            flush=True,
        )

        await _tiers_and_segments(sessions, rules, now)

        async with sessions() as session:
            started = time.perf_counter()
            mismatches = 0
            first: list[Any] = []
            async for mismatch in verify_ledger(session):
                mismatches += 1
                if len(first) < 3:
                    first.append(mismatch)
            elapsed = time.perf_counter() - started
            members = await session.scalar(select(func.count()).select_from(Member))
        print(
            f"verify_ledger: {elapsed:.1f} s ({members:,} members, {mismatches:,} mismatches)  "
            f"[{_verdict(elapsed)}]",
            flush=True,
        )
        for mismatch in first:
            print(f"  {mismatch}")
    finally:
        await engine.dispose()


async def _tiers_and_segments(
    sessions: Callable[[], Any], rules: ProgrammeRules, now: datetime
) -> None:
    async with sessions() as session:
        started = time.perf_counter()
        review = await reevaluate_tiers(session, rules, now)
        elapsed = time.perf_counter() - started
    print(
        f"reevaluate_tiers: {elapsed:.1f} s ({review.evaluated:,} members: "
        f"{review.upgraded:,} up, {review.downgraded:,} down, {review.unchanged:,} unchanged; "
        f"top-spend threshold {review.top_spend_threshold_fen} fen)  [{_verdict(elapsed)}]",
        flush=True,
    )
    async with sessions() as session:
        started = time.perf_counter()
        counts = await refresh_segments(session, rules, now)
        elapsed = time.perf_counter() - started
    shown = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    print(f"refresh_segments: {elapsed:.1f} s ({shown})  [{_verdict(elapsed)}]", flush=True)


def points_query(url: str, args: argparse.Namespace) -> None:
    """积分 through the webhook of a real server on this database, at concurrency 32.

    Twice over the same members: first asks (each member's first message: the member id and
    the summary come from PostgreSQL) and asked again (both from Redis, as within the hour).
    The load generator is bench/webhook.py; the server is ``python -m bot serve`` with an
    embedded Redis, so both runs pay the whole path: signature, gate, handler, reply.
    """
    folder = Path(tempfile.mkdtemp(prefix="bench-points-"))
    port = _free_port()
    config = folder / "config.toml"
    config.write_text(
        '[wechat]\nappid = "wx49f0ab532d5d035a"\nsecret = "bench-secret"\n'
        'token = "benchtoken"\napi_base_url = "http://127.0.0.1:9"\n'
        f'[server]\nport = {port}\n[database]\nurl = "{url}"\n'
        f'[redis]\nurl = ""\nembedded_path = "{folder}/redis.db"\n'
        '[api]\ntoken = "bench-api-token-0123456789"\n',
        encoding="utf-8",
    )
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "serve"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, server)
        members = min(args.points_members, args.members)
        command = [
            sys.executable,
            str(ROOT / "bench" / "webhook.py"),
            f"--url=http://127.0.0.1:{port}/wechat",
            f"--config={config}",
            f"--concurrency={POINTS_CONCURRENCY}",
            f"--members={members}",
            "--openids=o_bench_{:08d}",
            "--first=1",
            "--warmup=0",
            f"--requests={members}",
        ]
        for label in ("first asks (PostgreSQL)", "asked again (Redis)"):
            print(f"points query through the webhook, {label}:", flush=True)
            subprocess.run(command, check=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server stopped before it was serving")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit("the server did not start serving within 60 s")


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url
        return
    started = time.perf_counter()
    process, url = pg.start()
    print(f"PostgreSQL started in {time.perf_counter() - started:.1f} s", flush=True)
    try:
        yield url
    finally:
        if args.keep:
            print(f"cluster kept running: {url}\n  stop it with: kill {process.pid}")
        else:
            pg.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--lots-per-member", type=float, default=5.0, help="on average")
    parser.add_argument("--orders-per-member", type=float, default=3.0, help="on average")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument(
        "--no-load", action="store_true", help="with --url: the data is there already"
    )
    parser.add_argument("--no-jobs", action="store_true", help="time only the points query")
    parser.add_argument(
        "--points-members", type=int, default=30_000, help="members asking 积分 (each twice)"
    )
    args = parser.parse_args()
    if args.no_load and not args.url:
        parser.error("--no-load needs --url")

    rules = ProgrammeRules()
    with _cluster(args) as url:
        load1, _, _ = os.getloadavg()
        print(
            f"ledger bench: members={args.members:,} lots/member={args.lots_per_member} "
            f"orders/member={args.orders_per_member} seed={args.seed} "
            f"(load average before: {load1:.2f} on {os.cpu_count()} CPUs)",
            flush=True,
        )
        started = time.perf_counter()
        # Alembic's env runs its own event loop: migrate before ours starts.
        upgrade(url)
        print(f"migrations: {time.perf_counter() - started:.1f} s", flush=True)
        if not args.no_load:
            asyncio.run(load(url, args, rules))
        asyncio.run(describe(url))
        if not args.no_jobs:
            asyncio.run(jobs(url))
        points_query(url, args)
        load1, _, _ = os.getloadavg()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"done: load average {load1:.2f}; this process peaked at {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
