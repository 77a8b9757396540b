"""One push to 100,000 members through the pipeline, and the audience selection at 1,000,000.

    python bench/fanout.py                                         # the issue's run (see below)
    python bench/fanout.py --members 20000 --selection-members 0   # a quick check (1-2 min)
    python bench/fanout.py --workers 2 --concurrency 256 --keep    # keep the cluster and folder
    python bench/fanout.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot_test

The default run takes 7-10 minutes with the pipeline sending a push per claim (180-300
deliveries/s on the 2-core machine), under 2 minutes at the 2,000/s the issue asks for.

Without --url it starts a throwaway PostgreSQL (bench/pg.py: fsync off, otherwise defaults) and
migrates it; it always starts a real redis-server (tests/services.py) and the WeChat stand-in
(tests/wechat_standin.py under uvloop, on 127.0.0.1 and a free port, in a process of its own:
``python bench/fanout.py --serve-standin PORT``, which adds one route, ``GET /_bench/count``:
how many template messages it took, for how many distinct openids).

It bulk-loads (COPY) max(--members, --selection-members) members: --members of them, spread
evenly over the ids, are subscribed followers in segment ``bench`` (the push's audience); the
others are a mix (8% unfollowed, 3% shop customers without an openid, RFM segments). A database
given with --url must be empty, or hold exactly these members from an earlier run. Then:

1. selection: ``models.members.audience(session)`` (every subscribed follower) streamed to the
   end, counting ids — seconds (goal < 30 s at 1,000,000) and this process's peak RSS;
2. --workers delivery processes, ``python -m bot --config CFG worker --workers 1`` each, with
   a template for purpose ``bench`` and WeChat's rate limit raised to 100,000/s (the measurement
   is of the pipeline, not of WeChat's quota);
3. one SERVICE push: ``audience(session, ["bench"])`` planned 1,000 rows per transaction
   (``models.deliveries.plan``, keys ``bench:<run>:<member>``), each batch put on the stream
   after it commits (``Outbox.enqueue``); the workers send while planning goes on;
4. from the first enqueue until every row is final (the database polled every 0.5 s):
   deliveries/s (goal ≥ 2,000 with 2 workers), each worker's peak RSS (psutil every 0.2 s;
   goal < 300 MB), the CPU each part used per delivery (workers, stand-in, PostgreSQL, Redis,
   this process) and what other processes on the machine took meanwhile, the connections
   PostgreSQL accepted, rows by status and reason, and whether the stand-in got exactly one
   template message per member (a duplicate is reported loudly, as a failure).

Prints figures; exits 0, or 1 if a member was missed or pushed twice. Processes and scratch
folders are removed at the end; --keep leaves the cluster running and the scratch folder
(config.toml, worker and stand-in logs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from bench.ledger import _asyncpg_dsn, _cluster, _free_port, _wait_for_port  # noqa: E402
from bot.database import create_engine, create_sessionmaker  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.push.outbox import Outbox  # noqa: E402
from models.deliveries import SERVICE, Delivery, PlannedPush, plan  # noqa: E402
from models.members import audience  # noqa: E402
from tests.services import redis_server  # noqa: E402

APPID, SECRET = "wxbench0000000001", "bench-secret"
TEMPLATE_PATH = "/cgi-bin/message/template/send"
WORKER = ("serve", "--role", "worker", "--consumers", "1")  # one consumer per process
PURPOSE = "bench"
SEGMENT = "bench"  # the push's audience
OTHER_SEGMENTS = ("core", "important", "at_risk", "dormant", "potential", "other", None)
CHUNK = 50_000  # members generated and copied at a time
PLAN_BATCH = 1000
GOAL_RATE = 2000.0
GOAL_RSS_MB = 300.0
GOAL_SELECTION_S = 30.0
MB = 2**20
Sessions = async_sessionmaker[AsyncSession]
COLUMNS = (
    "id",
    "openid",
    "customer_ref",
    "subscribed",
    "subscribed_at",
    "unsubscribed_at",
    "last_interaction_at",
    "created_at",
    "segment",
)


# -- the WeChat stand-in, in a process of its own ------------------------------------------------


def serve_standin(port: int) -> None:
    """Serve tests/wechat_standin.py on 127.0.0.1:``port``, plus ``GET /_bench/count``."""
    import uvloop
    from aiohttp import web

    from tests.wechat_standin import WeChatStandIn

    standin = WeChatStandIn(appid=APPID, secret=SECRET)
    app = standin.app()

    async def count(_request: web.Request) -> web.Response:
        users = Counter(
            (call.body or {}).get("touser") for call in standin.calls if call.path == TEMPLATE_PATH
        )
        return web.json_response(
            {
                "template_sends": sum(users.values()),
                "distinct": len(users),
                "duplicated": sum(1 for n in users.values() if n > 1),
                "token_fetches": standin.token_fetches,
            }
        )

    app.router.add_get("/_bench/count", count)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def standin_count(base_url: str) -> dict[str, int]:
    """What the stand-in has received (its ``/_bench/count``)."""
    with urllib.request.urlopen(f"{base_url}/_bench/count", timeout=30) as response:
        return dict(json.loads(response.read()))


# -- memory and CPU --------------------------------------------------------------------------


class RssSampler:
    """Samples the RSS of some processes every ``interval`` seconds in a thread; keeps peaks."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.Error):
                self.peak[name] = max(self.peak[name], process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _postgres_cpu(port: int) -> float:
    """CPU seconds of the cluster on ``port``: the postmaster, its live children, and the
    children that have exited (connections closed by a pool)."""
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] != "postgres" or "-p" not in cmdline:
            continue
        if cmdline[cmdline.index("-p") + 1 :][:1] != [str(port)]:
            continue
        try:
            times = process.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            return total + sum(_cpu_seconds(child.pid) for child in process.children())
        except psutil.Error:
            return 0.0
    return 0.0


def _redis_pid(redis_url: str) -> int | None:
    socket_path = redis_url.removeprefix("unix://")
    for process in psutil.process_iter(["name", "cmdline"]):
        if "redis" in (process.info["name"] or "") and socket_path in " ".join(
            process.info["cmdline"] or []
        ):
            return process.pid
    return None


def _machine(times: Any) -> tuple[float, float]:
    """All CPU seconds and the idle ones (guest time is already counted in user time)."""
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return sum(times) - guest, times.idle + getattr(times, "iowait", 0.0)


class CpuMeter:
    """CPU seconds used by each part of the bench, and by the rest of the machine, over a span."""

    def __init__(self, parts: dict[str, Callable[[], float]]) -> None:
        self.parts = parts
        self.before = {name: read() for name, read in parts.items()}
        self.machine_before = psutil.cpu_times()
        self.used: dict[str, float] = {}
        self.busy = self.elapsed = 0.0

    def stop(self) -> None:
        self.used = {name: read() - self.before[name] for name, read in self.parts.items()}
        total_before, idle_before = _machine(self.machine_before)
        total, idle = _machine(psutil.cpu_times())
        self.elapsed = (total - total_before) / (psutil.cpu_count() or 1)
        self.busy = (total - total_before) - (idle - idle_before)

    def report(self, deliveries: int) -> str:
        cores = psutil.cpu_count() or 1
        available = self.elapsed * cores
        share = self.busy / max(available, 1e-9)
        head = (
            f"CPU during the send: the machine was {share:.0%} busy ({self.busy:.0f} of "
            f"{available:.0f} core-seconds on {cores} cores):"
        )
        lines = [head]
        for name, seconds in self.used.items():
            per = seconds / max(deliveries, 1) * 1e6
            lines.append(f"  {name:<14} {seconds:7.1f} s  {per:>7,.0f} µs/delivery")
        others = max(self.busy - sum(self.used.values()), 0.0)
        lines.append(f"  {'other processes':<14} {others:7.1f} s  (not this bench: other work)")
        return "\n".join(lines)


# -- loading ---------------------------------------------------------------------------------


def _generate(first: int, last: int, total: int, pushed: int, rng: random.Random) -> list[Any]:
    """Members ``first``..``last``: exactly ``pushed`` of all ``total``, spread evenly, are
    subscribed followers in the push's segment; the others a realistic mix."""
    now = datetime.now(UTC)
    rows = []
    for m in range(first, last + 1):
        created = now - timedelta(seconds=int(rng.random() * 3 * 365 * 86_400))
        in_push = (m * pushed) // total != ((m - 1) * pushed) // total
        if in_push:
            rows.append((m, f"o_fan_{m:08d}", None, True, created, None, created, created, SEGMENT))
            continue
        r = rng.random()
        segment = rng.choice(OTHER_SEGMENTS)
        if r < 0.03:  # a shop customer not yet bound to a follower
            rows.append((m, None, f"C{m:08d}", False, None, None, None, created, segment))
        elif r < 0.11:  # unfollowed
            gone = created + (now - created) * rng.random()
            rows.append(
                (m, f"o_fan_{m:08d}", None, False, created, gone, created, created, segment)
            )
        else:
            rows.append((m, f"o_fan_{m:08d}", None, True, created, None, created, created, segment))
    return rows


async def load_members(dsn: str, total: int, pushed: int) -> None:
    """COPY ``total`` members (``pushed`` of them in the push's segment), then VACUUM ANALYZE;
    reuses a database that holds exactly these already (--url, a second run)."""
    connection = await asyncpg.connect(dsn)
    try:
        have = await connection.fetchval("SELECT count(*) FROM members")
        if have:
            in_segment = await connection.fetchval(
                "SELECT count(*) FROM members WHERE segment = $1 AND subscribed", SEGMENT
            )
            if have == total and in_segment == pushed:
                print(f"members: {have:,} already loaded ({in_segment:,} in the push)", flush=True)
                return
            raise SystemExit(
                f"the database holds {have:,} members ({in_segment:,} in segment {SEGMENT!r}), "
                f"not {total:,} ({pushed:,}): use an empty one"
            )
        started = time.perf_counter()
        rng = random.Random(1)
        pending: asyncio.Future[Any] | None = None
        for first in range(1, total + 1, CHUNK):
            rows = await asyncio.to_thread(
                _generate, first, min(total, first + CHUNK - 1), total, pushed, rng
            )
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(
                connection.copy_records_to_table("members", records=rows, columns=COLUMNS)
            )
        if pending is not None:
            await pending
        await connection.fetchval(
            "SELECT setval(pg_get_serial_sequence('members', 'id'), $1 + 1, false)", total
        )
        copied = time.perf_counter() - started
        await connection.execute("VACUUM ANALYZE members")
        print(
            f"members: {total:,} loaded with COPY in {copied:.1f} s, VACUUM ANALYZE "
            f"{time.perf_counter() - started - copied:.1f} s ({pushed:,} in the push's segment)",
            flush=True,
        )
    finally:
        await connection.close()


# -- selection --------------------------------------------------------------------------------


async def time_selection(url: str) -> None:
    """Stream the whole programme's audience to the end, as a programme-wide push would."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    try:
        before = psutil.Process().memory_info().rss
        with RssSampler({"bench": os.getpid()}) as rss:
            started = time.perf_counter()
            count = batches = 0
            async with sessions() as session:
                async for ids in audience(session):
                    count += len(ids)
                    batches += 1
            elapsed = time.perf_counter() - started
        verdict = "ok" if elapsed < GOAL_SELECTION_S else "MISSED"
        print(
            f"selection: audience() streamed {count:,} ids in {batches:,} batches in "
            f"{elapsed:.2f} s ({count / elapsed:,.0f} ids/s)  [goal < {GOAL_SELECTION_S:.0f} s: "
            f"{verdict}]\n"
            f"  this process's RSS: {before / MB:.0f} MB before, peak {rss.peak['bench'] / MB:.0f}"
            " MB while streaming",
            flush=True,
        )
    finally:
        await engine.dispose()


# -- the push ---------------------------------------------------------------------------------


@dataclass
class Push:
    """The push being measured: what was planned, and when."""

    run: str
    planned: int = 0
    first_id: int | None = None
    first_enqueue: float = 0.0  # time.time()
    planning_s: float = 0.0
    finished: float = 0.0
    progress: list[tuple[float, int]] = field(default_factory=list)  # (since enqueue, final)


async def plan_push(sessions: Sessions, outbox: Outbox, push: Push) -> None:
    """The push's audience, planned 1,000 rows per transaction, each batch queued on commit."""
    now = datetime.now(UTC)
    payload = {"fields": {"title": "会员日：本周积分双倍"}}
    started = time.perf_counter()
    async with sessions() as reader:
        async for members in audience(reader, [SEGMENT], batch=PLAN_BATCH):
            pushes = [PlannedPush(m, f"bench:{push.run}:{m}", payload) for m in members]
            async with sessions.begin() as session:
                ids = await plan(session, PURPOSE, SERVICE, pushes, now)
            if ids and push.first_id is None:
                push.first_id = min(ids)
                push.first_enqueue = time.time()
            await outbox.enqueue(ids)
            push.planned += len(ids)
    push.planning_s = time.perf_counter() - started


async def wait_until_final(
    sessions: Sessions, push: Push, planning: asyncio.Task[None], limit_s: float
) -> None:
    """Poll every 0.5 s until planning is done and none of the push's rows is queued/sending."""
    table = Delivery.__table__
    last_print = time.monotonic()
    deadline = time.monotonic() + limit_s
    while True:
        await asyncio.sleep(0.5)
        if push.first_id is None:
            if planning.done():
                planning.result()
                return
            continue
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(
                        func.count().filter(table.c.status.in_(("queued", "sending"))),
                        func.count(),
                    ).where(table.c.id >= push.first_id, table.c.purpose == PURPOSE)
                )
            ).one()
        waiting, planned = int(rows[0]), int(rows[1])
        since = time.time() - push.first_enqueue
        push.progress.append((since, planned - waiting))
        if time.monotonic() - last_print >= 5:
            last_print = time.monotonic()
            print(
                f"  {since:5.1f} s: {planned - waiting:,} final, {waiting:,} waiting, "
                f"{push.planned:,} planned",
                flush=True,
            )
        if planning.done() and waiting == 0:
            planning.result()
            push.finished = time.time()
            return
        if time.monotonic() > deadline:
            print(f"  gave up after {limit_s:.0f} s with {waiting:,} rows not final", flush=True)
            push.finished = time.time()
            return


async def run_push(
    url: str,
    redis_url: str,
    standin: str,
    workers: dict[str, int],
    cpu: dict[str, Callable[[], float]],
    limit_s: float,
) -> bool:
    """Plan the push, wait for it, print the figures; True when every member got it once."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    redis = Redis.from_url(redis_url)
    push = Push(run=f"{int(time.time())}")
    pids = {**workers, "planner (this process)": os.getpid()}
    meter = CpuMeter(cpu)
    try:
        opened = await _sessions_opened(sessions)
        with RssSampler(pids) as rss:
            planning = asyncio.create_task(plan_push(sessions, Outbox(redis), push))
            await wait_until_final(sessions, push, planning, limit_s)
        meter.stop()
        await asyncio.sleep(1)  # PostgreSQL publishes a session's statistics within a second
        opened = await _sessions_opened(sessions) - opened
        table = Delivery.__table__
        first_id = push.first_id or 0
        async with sessions() as session:
            ended = await session.scalar(
                select(func.max(table.c.updated_at)).where(table.c.id >= first_id)
            )
            breakdown = (
                await session.execute(
                    select(table.c.status, table.c.channel, table.c.reason, func.count())
                    .where(table.c.id >= first_id, table.c.purpose == PURPOSE)
                    .group_by(table.c.status, table.c.channel, table.c.reason)
                    .order_by(func.count().desc())
                )
            ).all()
    finally:
        await redis.aclose()
        await engine.dispose()

    counts = standin_count(standin)
    sent = sum(n for status, _c, _r, n in breakdown if status == "sent")
    final = sum(n for status, _c, _r, n in breakdown if status not in ("queued", "sending"))
    end = ended.timestamp() if ended is not None else push.finished
    span = max(end - push.first_enqueue, 1e-9)
    rate = final / span
    print(
        f"planning: {push.planned:,} rows in {push.planning_s:.1f} s "
        f"({push.planned / max(push.planning_s, 1e-9):,.0f} rows/s, batches of {PLAN_BATCH:,}, "
        "each enqueued after its commit; the workers were sending meanwhile)"
    )
    verdict = "ok" if rate >= GOAL_RATE else "MISSED"
    print(
        f"delivery: {final:,} of {push.planned:,} rows final {span:.1f} s after the first "
        f"enqueue: {rate:,.0f} deliveries/s sustained with {len(workers)} worker(s)  "
        f"[goal >= {GOAL_RATE:,.0f}/s: {verdict}]"
    )
    steady = _steady_rate(push.progress, push.planned)
    if steady is not None:
        print(f"  steady state (10% → 90% final): {steady:,.0f} deliveries/s")
    print(meter.report(final))
    print(f"PostgreSQL connections opened during the send: {opened:,}")
    for name, peak in rss.peak.items():
        if name in workers:
            ok = "ok" if peak / MB < GOAL_RSS_MB else "OVER"
            print(f"peak RSS {name}: {peak / MB:.0f} MB  [goal < {GOAL_RSS_MB:.0f} MB: {ok}]")
        else:
            print(f"peak RSS {name}: {peak / MB:.0f} MB")
    print("rows by status:")
    for status, channel, reason, n in breakdown:
        print(f"  {status:<8} channel={channel or '-':<9} reason={reason or '-':<14} {n:>9,}")
    extra = counts["template_sends"] - counts["distinct"]
    all_there = counts["distinct"] == push.planned and sent == push.planned
    exactly_once = all_there and extra == 0 and counts["duplicated"] == 0
    print(
        f"stand-in: {counts['template_sends']:,} template messages to {counts['distinct']:,} "
        f"distinct openids ({push.planned:,} planned, {sent:,} rows sent), "
        f"{counts['duplicated']:,} openids more than once, "
        f"{counts['token_fetches']} token fetch(es)"
    )
    print(
        f"every member exactly once: {'yes' if exactly_once else 'NO'} "
        f"(duplicates: {extra:,}; "
        f"missing: {push.planned - counts['distinct']:,})"
    )
    if extra or counts["duplicated"]:
        print(
            f"!!! DUPLICATE SENDS: {extra:,} extra template messages to "
            f"{counts['duplicated']:,} members: WeChat would have pushed them twice !!!"
        )
    return exactly_once


async def _sessions_opened(sessions: Sessions) -> int:
    """Connections the database has accepted so far (PostgreSQL 14+)."""
    async with sessions() as session:
        found = await session.scalar(
            text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        )
    return int(found or 0)


def _steady_rate(progress: list[tuple[float, int]], total: int) -> float | None:
    """Deliveries/s between the polls that saw 10% and 90% of the rows final."""
    low = next(((t, n) for t, n in progress if n >= total * 0.1), None)
    high = next(((t, n) for t, n in progress if n >= total * 0.9), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


# -- processes --------------------------------------------------------------------------------


def write_config(
    folder: Path, url: str, redis_url: str, standin: str, args: argparse.Namespace
) -> Path:
    config = folder / "config.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "benchtoken"\n'
        f'api_base_url = "{standin}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[redis]\nurl = "{redis_url}"\n'
        '[api]\ntoken = "bench-api-token-0123456789"\n'
        f"[delivery]\nworkers = 1\nconcurrency = {args.concurrency}\n"
        "# WeChat's own quota is not what is measured here.\n"
        "rate_per_second = { template = 100000.0, custom = 100000.0, mass = 1.0 }\n"
        f'[delivery.templates.{PURPOSE}]\ntemplate_id = "TPL_BENCH"\n'
        'fields = { first = "title" }\n'
        "[scheduler]\nenabled = false\n"
        f'[logging]\nlevel = "{args.log_level}"\n',
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def standin_process(folder: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    log = (folder / "standin.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-standin", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        _stop(process)
        log.close()


@contextlib.contextmanager
def worker_processes(folder: Path, config: Path, count: int) -> Iterator[dict[str, int]]:
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n in range(1, count + 1):
            out = (folder / f"worker-{n}.out").open("wb")
            err = (folder / f"worker-{n}.log").open("wb")
            logs += [out, err]
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot", "--config", str(config), *WORKER],
                    cwd=ROOT,
                    stdout=out,
                    stderr=err,
                )
            )
        deadline = time.monotonic() + 60
        for n, process in enumerate(processes, 1):
            while b"running as worker" not in (folder / f"worker-{n}.out").read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / f"worker-{n}.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"worker {n} did not start:\n{tail}")
                time.sleep(0.1)
        yield {f"worker {n}": p.pid for n, p in enumerate(processes, 1)}
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _cpu_parts(
    url: str, redis_url: str, workers: dict[str, int], standin_pid: int
) -> dict[str, Callable[[], float]]:
    """What to measure the CPU time of: each worker, the stand-in, PostgreSQL (when it runs
    here), Redis, and this process (planning and polling)."""
    parts: dict[str, Callable[[], float]] = {
        name: functools.partial(_cpu_seconds, pid) for name, pid in workers.items()
    }
    parts["stand-in"] = functools.partial(_cpu_seconds, standin_pid)
    port = make_url(url).port
    if port and _postgres_cpu(port):
        parts["PostgreSQL"] = functools.partial(_postgres_cpu, port)
    if (redis_pid := _redis_pid(redis_url)) is not None:
        parts["Redis"] = functools.partial(_cpu_seconds, redis_pid)
    parts["this process"] = functools.partial(_cpu_seconds, os.getpid())
    return parts


def _log_problems(folder: Path, count: int) -> None:
    for n in range(1, count + 1):
        lines = (folder / f"worker-{n}.log").read_text(errors="replace").splitlines()
        bad = [line for line in lines if "level=error" in line or "level=warning" in line]
        print(f"worker {n} log: {len(lines):,} lines, {len(bad):,} warnings/errors")
        for line in bad[:3]:
            print(f"  {line[:300]}")


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="the push's audience")
    parser.add_argument(
        "--selection-members",
        type=int,
        default=1_000_000,
        help="members in all, for the selection timing (0: no selection timing)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=256, help="sends in flight per worker")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and scratch folder")
    parser.add_argument("--log-level", default="INFO", help="the workers' [logging] level")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for the push to finish"
    )
    parser.add_argument("--serve-standin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_standin:
        serve_standin(args.serve_standin)
        return 0
    if args.members < 1 or args.selection_members < 0 or args.workers < 1:
        parser.error("--members and --workers must be positive, --selection-members >= 0")

    load1, _, _ = os.getloadavg()
    print(
        f"fanout bench: push to {args.members:,} members, selection over "
        f"{args.selection_members:,}, {args.workers} worker process(es) at concurrency "
        f"{args.concurrency} (load average before: {load1:.2f} on {os.cpu_count()} CPUs)",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    ok = False
    try:
        ok = _run(args, folder)
    except KeyboardInterrupt:
        print("interrupted: processes stopped", flush=True)
    finally:
        if args.keep:
            print(f"scratch folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


def _run(args: argparse.Namespace, folder: Path) -> bool:
    """Everything between the scratch folder's creation and its removal."""
    with _cluster(args) as url:
        started = time.perf_counter()
        upgrade(url)  # Alembic runs its own event loop: before ours.
        print(f"migrations: {time.perf_counter() - started:.1f} s", flush=True)
        total = max(args.members, args.selection_members)
        asyncio.run(load_members(_asyncpg_dsn(url), total, args.members))
        if args.selection_members:
            asyncio.run(time_selection(url))
        with (
            redis_server() as redis_url,
            standin_process(folder) as (standin, standin_pid),
        ):
            config = write_config(folder, url, redis_url, standin, args)
            started = time.perf_counter()
            with worker_processes(folder, config, args.workers) as workers:
                print(
                    f"{args.workers} worker(s) up in {time.perf_counter() - started:.1f} s; "
                    f"stand-in on {standin}; WeChat rate limit raised to 100,000/s",
                    flush=True,
                )
                cpu = _cpu_parts(url, redis_url, workers, standin_pid)
                ok = asyncio.run(run_push(url, redis_url, standin, workers, cpu, args.timeout))
            _log_problems(folder, args.workers)
    return ok


if __name__ == "__main__":
    sys.exit(main())
