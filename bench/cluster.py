"""The service scaled out on one host: 2 web, 2 worker and 2 scheduler processes, one PostgreSQL.

    python bench/cluster.py                                      # the issue's run
    python bench/cluster.py --members 5000 --push 2000 --requests 5000   # a quick check
    python bench/cluster.py --keep                               # keep the cluster and folder
    python bench/cluster.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/bot_test

Any run takes 2½-4 minutes: the failover drill needs three of the job's minute boundaries (one
under each leader, one falling due while nobody leads) and the measurements, about a minute
and a half at the defaults, run meanwhile; a bigger --push or --requests lengthens only them.

Without --url it starts a throwaway PostgreSQL (bench/pg.py) and migrates it; it always starts
a real redis-server (tests/services.py) and the WeChat stand-in of bench/fanout.py (its own
process, counting the template messages it takes per openid). It COPYs --members members
(bench/fanout.py's ``load_members``; --push of them, spread evenly, are subscribed followers in
segment ``bench``, the others a realistic mix) and writes one config.toml that every process
reads: bench/fanout.py's, with ``[scheduler] leader_ttl_seconds = --ttl`` and one cheap job,
``referral-rewards`` (nothing is due, so each run is a single indexed query), every minute.
Every process is ``python -m bot --config CFG serve --role ROLE`` on 127.0.0.1. Then:

1. schedulers: two ``--role scheduler`` processes start first and stay up throughout; a
   thread plays the failover drill alongside the phases below (it only reads their logs and
   sleeps): once the leader (its log's ``leader lock gained``) has run the job once, it is
   SIGKILLed at second --kill-second of a minute, by default 58, so that the next period falls
   due while nobody leads; measured: the seconds until the other process logs ``leader lock
   gained`` (goal: within the TTL), and it must run the missed period late and then at least
   one more on time;
2. webhook: one ``--role web`` process on port P; --pool followers each ask 积分 once
   (warm-up), then --requests signed 积分 messages from the same followers at --concurrency
   over raw keep-alive connections (bench/webhook.py's load generator, in this process):
   requests/s, p50, p99; then a second ``--role web`` on the same port P (SO_REUSEPORT: the
   kernel spreads connections over both), warm-up and measurement again, and the ratio. The
   CPU each part used (each web process, PostgreSQL, Redis, the load generator, ...) shows
   where the 2 cores went: load generator and database share them with the web processes;
3. delivery: one ``--role worker --consumers 1`` process; one SERVICE push to the --push
   followers, planned and enqueued as bench/fanout.py does (1,000 rows per transaction), timed
   from the first enqueue until every row is final: deliveries/s; then two worker processes
   and a second push (other dedupe keys) to the same followers, and the ratio. Each push must
   reach each follower exactly once: the stand-in's counts (every openid once after the
   first, twice after the second) and the rows (all ``sent``);
4. the job's runs, from both schedulers' logs (``job run`` lines, scheduled time and process)
   and the run claims in Redis: every scheduled minute from the first to the last exactly
   once, none missed, none twice.

Prints figures and a summary table; exits 0, or 1 on a correctness failure (a delivery missed
or sent twice, a webhook error, a period run twice or not at all, a takeover slower than the
TTL plus --slack). Processes are stopped and the scratch folder removed at the end; --keep
leaves PostgreSQL running and the folder (config.toml and every process's log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import uvloop  # noqa: E402
from redis import Redis as SyncRedis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.fanout import (  # noqa: E402
    PURPOSE,
    CpuMeter,
    Push,
    _cpu_parts,
    _cpu_seconds,
    _steady_rate,
    _stop,
    load_members,
    plan_push,
    standin_count,
    standin_process,
    wait_until_final,
    write_config,
)
from bench.ledger import _asyncpg_dsn, _cluster, _free_port  # noqa: E402
from bench.webhook import _build_requests  # noqa: E402
from bench.webhook import _run as send_requests  # noqa: E402
from bot.config import Config, load_config  # noqa: E402
from bot.database import create_engine, create_sessionmaker  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.push.outbox import Outbox  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402
from models.deliveries import Delivery  # noqa: E402
from scheduler.runner import LOCK_KEY  # noqa: E402
from tests.services import redis_server  # noqa: E402

JOB = "referral-rewards"
READY = {
    "web": b"serving on http://",
    "worker": b"running as worker",
    "scheduler": b"running as scheduler",
}
REQUEST_LINE = b"msg=request method=POST route=/wechat "
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


# -- processes --------------------------------------------------------------------------------


@dataclass
class Service:
    """One ``python -m bot serve --role ...`` process and its output files."""

    name: str
    role: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float  # time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_lines(self) -> list[dict[str, str]]:
        """Its log (logfmt on stderr), each line parsed."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [_logfmt(line) for line in text.splitlines() if line.startswith("ts=")]

    def requests_served(self) -> int:
        return self.log.read_bytes().count(REQUEST_LINE)


def _logfmt(line: str) -> dict[str, str]:
    fields = {}
    for key, raw in _LOGFMT.findall(line):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        fields[key] = raw
    return fields


def _log_time(fields: dict[str, str]) -> float:
    stamp = datetime.strptime(fields["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return stamp.timestamp()


@contextlib.contextmanager
def service(folder: Path, config: Path, name: str, role: str, *extra: str) -> Iterator[Service]:
    """Start ``serve --role role``; yield it once it says it is serving; stop it at the end."""
    out, log = folder / f"{name}.out", folder / f"{name}.log"
    with out.open("wb") as out_file, log.open("wb") as log_file:
        started = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "serve", "--role", role, *extra],
            cwd=ROOT,
            stdout=out_file,
            stderr=log_file,
        )
        try:
            deadline = time.monotonic() + 60
            while READY[role] not in out.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise SystemExit(f"{name} did not start:\n{tail}")
                time.sleep(0.05)
            yield Service(name, role, process, out, log, started)
        finally:
            _stop(process)


def _write_config(
    folder: Path, url: str, redis_url: str, standin: str, args: argparse.Namespace
) -> tuple[Path, Config]:
    """bench/fanout.py's config, its ``[scheduler]`` table replaced by ours."""
    path = write_config(folder, url, redis_url, standin, args)
    kept: list[str] = []
    in_scheduler = False
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("["):
            in_scheduler = line.strip() == "[scheduler]"
        if not in_scheduler:
            kept.append(line)
    kept.append(
        f'[scheduler]\nleader_ttl_seconds = {args.ttl}\njobs = {{ "{JOB}" = "* * * * *" }}\n'
    )
    path.write_text("".join(kept), encoding="utf-8")
    config = load_config(str(path))
    scheduler = config.scheduler
    if (
        not scheduler.enabled
        or scheduler.leader_ttl_seconds != args.ttl
        or scheduler.jobs != {JOB: "* * * * *"}
    ):
        raise SystemExit(f"{path}: [scheduler] is not what the bench wrote: {scheduler}")
    return path, config


def _problems(services: list[Service]) -> None:
    """Each process's warnings and errors (a few of each), so nothing goes unseen."""
    for svc in services:
        lines = svc.log.read_text(errors="replace").splitlines()
        bad = [line for line in lines if "level=error" in line or "level=warning" in line]
        print(f"  {svc.name} log: {len(lines):,} lines, {len(bad):,} warnings/errors")
        for line in bad[:3]:
            print(f"    {line[:300]}")


# -- CPU --------------------------------------------------------------------------------------


def _cpu_of(services: list[Service]) -> Callable[[], float]:
    """CPU seconds of some processes together; one that has gone (SIGKILLed) keeps its last
    reading, so a span's difference never goes negative."""
    last: dict[int, float] = {}

    def read() -> float:
        for svc in services:
            if svc.process.poll() is None:
                last[svc.pid] = _cpu_seconds(svc.pid) or last.get(svc.pid, 0.0)
        return sum(last.values())

    return read


def _cpu_table(meter: CpuMeter, unit: str, count: int) -> str:
    cores = psutil.cpu_count() or 1
    available = meter.elapsed * cores
    share = meter.busy / max(available, 1e-9)
    busy = f"{meter.busy:.0f} of {available:.0f} core-seconds on {cores} cores"
    lines = [f"  CPU: the machine was {share:.0%} busy ({busy})"]
    for name, seconds in meter.used.items():
        lines.append(
            f"    {name:<30} {seconds:6.1f} s  {seconds / max(count, 1) * 1e6:>6,.0f} µs/{unit}"
        )
    others = max(meter.busy - sum(meter.used.values()), 0.0)
    lines.append(f"    {'other processes':<30} {others:6.1f} s  (not this bench)")
    return "\n".join(lines)


# -- the webhook ------------------------------------------------------------------------------


@dataclass
class WebResult:
    processes: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    served: dict[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def _pool(dsn: str, size: int) -> list[str]:
    """Openids of ``size`` subscribed followers (the members who can write to the account)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT openid FROM members WHERE subscribed AND openid IS NOT NULL "
            "ORDER BY id LIMIT $1",
            size,
        )
    finally:
        await connection.close()
    return [row["openid"] for row in rows]


def _requests(client: WebhookClient, url: str, pool: list[str], n: int) -> list[bytes]:
    # An openid without "{}" is its own format string: one member's request per call.
    return [_build_requests(client, url, 1, 1, pool[i % len(pool)])[0] for i in range(n)]


def measure_webhook(
    webs: list[Service],
    url: str,
    client: WebhookClient,
    pool: list[str],
    args: argparse.Namespace,
    cpu: dict[str, Callable[[], float]],
) -> WebResult:
    print(
        f"webhook, {len(webs)} web process(es): warm-up ({len(pool):,} followers ask 积分 once)",
        flush=True,
    )
    uvloop.run(send_requests(url, _requests(client, url, pool, len(pool)), args.concurrency))
    requests = _requests(client, url, pool, args.requests)
    served = {web.name: web.requests_served() for web in webs}
    meter = CpuMeter(cpu)
    elapsed, latencies, errors = uvloop.run(send_requests(url, requests, args.concurrency))
    meter.stop()
    time.sleep(0.2)  # the last lines reach the logs
    served = {web.name: web.requests_served() - served[web.name] for web in webs}
    latencies.sort()
    result = WebResult(
        processes=len(webs),
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
        max_ms=latencies[-1] * 1000,
        errors=errors,
        served=served,
    )
    shares = ", ".join(f"{name} {n:,}" for name, n in served.items())
    print(
        f"  {result.requests:,} requests at concurrency {args.concurrency} in {elapsed:.1f} s: "
        f"{result.rate:,.0f} requests/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"max {result.max_ms:.1f} ms, {errors} error(s)\n"
        f"  served by: {shares}\n{_cpu_table(meter, 'request', result.requests)}",
        flush=True,
    )
    if errors:
        print(f"!!! WEBHOOK ERRORS: {errors:,} requests without a 200 and a reply !!!")
    return result


def webhook_phase(
    folder: Path,
    config: Path,
    settings: Config,
    url: str,
    redis_url: str,
    standin_pid: int,
    schedulers: list[Service],
    args: argparse.Namespace,
) -> list[WebResult]:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/wechat"
    wechat = settings.wechat
    client = WebhookClient(
        wechat.token.get_secret_value(), wechat.appid, wechat.encoding_aes_key.get_secret_value()
    )
    pool = asyncio.run(_pool(_asyncpg_dsn(url), args.pool))
    if len(pool) < args.pool:
        print(f"  (only {len(pool):,} subscribed followers to ask 积分)")
    results = []
    with contextlib.ExitStack() as stack:
        webs: list[Service] = []
        for n in (1, 2):
            started = time.perf_counter()
            web = stack.enter_context(
                service(folder, config, f"web-{n}", "web", "--port", str(port))
            )
            webs.append(web)
            print(f"web-{n} up in {time.perf_counter() - started:.1f} s on port {port}", flush=True)
            cpu = _cpu_parts(url, redis_url, {w.name: w.pid for w in webs}, standin_pid)
            cpu["schedulers"] = _cpu_of(schedulers)
            cpu["load generator (this process)"] = cpu.pop("this process")
            results.append(measure_webhook(webs, endpoint, client, pool, args, cpu))
        _problems(webs)
    one, two = results
    print(
        f"webhook: {two.rate:,.0f} / {one.rate:,.0f} requests/s = {two.rate / one.rate:.2f}x "
        "with 2 web processes",
        flush=True,
    )
    return results


# -- delivery ---------------------------------------------------------------------------------


@dataclass
class DeliveryResult:
    workers: int
    planned: int
    final: int
    sent: int
    seconds: float
    steady: float | None
    exactly_once: bool
    standin: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.final / max(self.seconds, 1e-9)


async def _push(
    url: str, redis_url: str, label: str, limit_s: float
) -> tuple[Push, datetime | None, list[tuple[str, str | None, int]]]:
    """Plan and enqueue one push to segment ``bench``, wait until every row is final; the
    push, its last row's update time, and its rows counted by status and reason."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    redis = Redis.from_url(redis_url)
    push = Push(run=f"{label}-{time.time_ns()}")
    try:
        planning = asyncio.create_task(plan_push(sessions, Outbox(redis), push))
        await wait_until_final(sessions, push, planning, limit_s)
        table = Delivery.__table__
        mine = (table.c.id >= (push.first_id or 0), table.c.purpose == PURPOSE)
        async with sessions() as session:
            ended = await session.scalar(select(func.max(table.c.updated_at)).where(*mine))
            rows = (
                await session.execute(
                    select(table.c.status, table.c.reason, func.count())
                    .where(*mine)
                    .group_by(table.c.status, table.c.reason)
                )
            ).all()
    finally:
        await redis.aclose()
        await engine.dispose()
    return push, ended, [(status, reason, int(n)) for status, reason, n in rows]


def measure_delivery(
    folder: Path,
    config: Path,
    url: str,
    redis_url: str,
    standin: str,
    standin_pid: int,
    schedulers: list[Service],
    count: int,
    pushes_before: int,
    args: argparse.Namespace,
) -> DeliveryResult:
    logs = folder / f"workers-{count}"
    logs.mkdir()
    before = standin_count(standin)
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        workers = [
            stack.enter_context(service(logs, config, f"worker-{n}", "worker", "--consumers", "1"))
            for n in range(1, count + 1)
        ]
        print(
            f"delivery, {count} worker process(es) (up in {time.perf_counter() - started:.1f} s, "
            f"{args.concurrency} sends in flight each): push to {args.push:,} followers",
            flush=True,
        )
        cpu = _cpu_parts(url, redis_url, {w.name: w.pid for w in workers}, standin_pid)
        cpu["schedulers"] = _cpu_of(schedulers)
        cpu["planner (this process)"] = cpu.pop("this process")
        meter = CpuMeter(cpu)
        push, ended, rows = asyncio.run(_push(url, redis_url, f"w{count}", args.timeout))
        meter.stop()
    _problems(workers)
    sent = sum(n for status, _reason, n in rows if status == "sent")
    final = sum(n for status, _reason, n in rows if status not in ("queued", "sending"))
    end = ended.timestamp() if ended is not None else push.finished
    seconds = end - push.first_enqueue
    counts = standin_count(standin)
    # The same followers every push: after push k each openid must have had exactly k messages.
    # With k = 1 or 2 the counts decide it: all there (distinct), none more than k (the total),
    # and after the second, every one at least twice (duplicated = all).
    k = pushes_before + 1
    members = args.push
    exact = (
        counts["distinct"] == members
        and counts["template_sends"] == k * members
        and counts["duplicated"] == (0 if k == 1 else members)
    )
    exactly_once = (
        before["template_sends"] == pushes_before * members
        and exact
        and push.planned == members
        and sent == members
    )
    result = DeliveryResult(
        count,
        push.planned,
        final,
        sent,
        seconds,
        _steady_rate(push.progress, push.planned),
        exactly_once,
        counts,
    )
    steady = f", steady (10% → 90%) {result.steady:,.0f}/s" if result.steady else ""
    print(
        f"  {final:,} of {push.planned:,} rows final {seconds:.1f} s after the first enqueue: "
        f"{result.rate:,.0f} deliveries/s{steady}; planning took {push.planning_s:.1f} s"
    )
    print(_cpu_table(meter, "delivery", final))
    for status, reason, n in rows:
        print(f"  rows {status:<8} reason={reason or '-':<14} {n:>9,}")
    print(
        f"  stand-in: {counts['template_sends'] - before['template_sends']:,} template messages "
        f"this push ({counts['template_sends']:,} in all to {counts['distinct']:,} openids, "
        f"{counts['duplicated']:,} of them more than once; {k} push(es) of {members:,} so far)"
    )
    print(f"  every follower exactly once: {'yes' if exactly_once else 'NO'}", flush=True)
    if not exactly_once:
        extra = counts["template_sends"] - before["template_sends"] - members
        print(
            f"!!! DELIVERY NOT EXACTLY ONCE: planned {push.planned:,}, rows sent {sent:,}, "
            f"stand-in took {extra:+,} messages against one per follower, "
            f"{counts['distinct']:,} distinct openids of {members:,} !!!",
            flush=True,
        )
    return result


# -- the scheduler's failover -----------------------------------------------------------------


@dataclass
class JobRun:
    process: str
    completed: bool
    outcome: str
    scheduled: datetime
    logged: float


def _job_runs(schedulers: list[Service]) -> list[JobRun]:
    runs = []
    for svc in schedulers:
        for line in svc.log_lines():
            if line.get("msg") == "job run" and line.get("job") == JOB:
                runs.append(
                    JobRun(
                        svc.name,
                        line.get("level") == "info",
                        line.get("outcome", ""),
                        datetime.fromisoformat(line["scheduled"]),
                        _log_time(line),
                    )
                )
    return sorted(runs, key=lambda run: (run.scheduled, run.logged))


def _gained(svc: Service, since: float = 0.0) -> float | None:
    """When ``svc`` logged ``leader lock gained`` (its first at or after ``since``)."""
    for line in svc.log_lines():
        if line.get("msg") == "leader lock gained" and _log_time(line) >= since:
            return _log_time(line)
    return None


class FailoverDrill(threading.Thread):
    """Kill the scheduler leader after its first run; time the takeover; see the new leader
    run the job. Runs beside the measurements: it only reads logs, sleeps and sends a signal."""

    def __init__(self, schedulers: list[Service], redis_url: str, args: argparse.Namespace) -> None:
        super().__init__(name="failover drill", daemon=True)
        self.schedulers = schedulers
        self.redis_url = redis_url
        self.ttl = float(args.ttl)
        self.kill_second = args.kill_second
        self.cancelled = threading.Event()
        self.leader: Service | None = None
        self.successor: Service | None = None
        self.key_left: float | None = None  # seconds the lock key had to live at the kill
        self.killed_at = 0.0
        self.gained_at: float | None = None
        self.error: str | None = None
        self.steps: list[str] = []

    @property
    def takeover(self) -> float | None:
        return None if self.gained_at is None else self.gained_at - self.killed_at

    def _note(self, text: str) -> None:
        self.steps.append(f"{time.strftime('%H:%M:%S')} {text}")

    def _wait(self, what: str, seconds: float, ready: Callable[[], object]) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            if self.cancelled.is_set():
                raise RuntimeError("cancelled")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {seconds:.0f} s")
            time.sleep(0.05)

    def run(self) -> None:
        try:
            self._drill()
        except Exception as exc:  # noqa: BLE001 - reported with the results
            self.error = f"{type(exc).__name__}: {exc}"
            self._note(f"drill stopped: {self.error}")

    def _drill(self) -> None:
        leaders: list[Service] = []

        def one_leads() -> bool:
            leaders[:] = [svc for svc in self.schedulers if _gained(svc) is not None]
            return bool(leaders)

        self._wait("a scheduler leading", 3 * self.ttl + 10, one_leads)
        if len(leaders) > 1:
            raise RuntimeError(f"both schedulers gained the lock: {[s.name for s in leaders]}")
        leader = self.leader = leaders[0]
        successor = self.successor = next(s for s in self.schedulers if s is not leader)
        self._note(f"{leader.name} leads; {successor.name} follows")

        def ran_under(svc: Service, after: float) -> bool:
            return any(
                run.completed and run.process == svc.name and run.scheduled.timestamp() > after
                for run in _job_runs(self.schedulers)
            )

        self._wait(f"{leader.name} running {JOB}", 100, lambda: ran_under(leader, 0))
        self._note(f"{leader.name} ran {JOB}")
        wait = (self.kill_second - time.time()) % 60
        if wait < 1:
            wait += 60
        if self.cancelled.wait(wait):
            raise RuntimeError("cancelled")
        with SyncRedis.from_url(self.redis_url) as redis:
            left_ms = redis.pttl(LOCK_KEY)
            self.killed_at = time.time()
            leader.process.kill()
        leader.process.wait(10)
        self.key_left = left_ms / 1000 if left_ms > 0 else None
        self._note(f"SIGKILL to {leader.name} (lock key had {left_ms} ms to live)")

        def gained() -> bool:
            self.gained_at = _gained(successor, self.killed_at - 0.001)
            return self.gained_at is not None

        self._wait(f"{successor.name} gaining the lock", 3 * self.ttl + 10, gained)
        self._note(f"{successor.name} gained the lock after {self.takeover:.2f} s")
        assert self.gained_at is not None
        gained_at = self.gained_at
        self._wait(
            f"{successor.name} running {JOB} on time",
            130,
            lambda: ran_under(successor, gained_at),
        )
        self._note(f"{successor.name} ran {JOB} on time")


@dataclass
class Periods:
    runs: list[JobRun]
    claims: list[int]
    scheduled: list[datetime]
    missing: list[datetime]
    doubled: dict[datetime, int]

    @property
    def ok(self) -> bool:
        return bool(self.scheduled) and not self.missing and not self.doubled


def job_periods(schedulers: list[Service], redis_url: str, drill: FailoverDrill) -> Periods:
    runs = _job_runs(schedulers)
    completed = Counter(run.scheduled for run in runs if run.completed)
    with SyncRedis.from_url(redis_url) as redis:
        claims = sorted(
            int(key.rsplit(b":", 1)[1]) for key in redis.scan_iter(f"{LOCK_KEY}:ran:{JOB}:*")
        )
    scheduled: list[datetime] = []
    # A database given with --url may hold a period from an earlier run, due on the first gain.
    since = min(svc.started for svc in schedulers)
    ours = [t for t in completed if t.timestamp() >= since]
    if ours:
        first, last = min(ours), max(ours)
        scheduled = [
            first + timedelta(minutes=m)
            for m in range(int((last - first).total_seconds() // 60) + 1)
        ]
    found = Periods(
        runs=runs,
        claims=claims,
        scheduled=scheduled,
        missing=[t for t in scheduled if not completed[t]],
        doubled={t: n for t, n in completed.items() if n > 1},
    )
    print(f"scheduler: job {JOB!r} every minute, leader lock TTL {drill.ttl:.0f} s")
    for step in drill.steps:
        print(f"  {step}")
    print("  scheduled  process       ran  late by  outcome")
    for run in runs:
        late = run.logged - run.scheduled.timestamp()
        ran = "yes" if run.completed else "no"
        print(
            f"  {run.scheduled:%H:%M:%S}   {run.process:<12}  {ran:<3} {late:6.2f} s  {run.outcome}"
        )
    claimed = {datetime.fromtimestamp(ts, UTC) for ts in claims}
    unrun = sorted(t for t in claimed if not completed[t])
    print(
        f"  {len(scheduled)} periods from the first run to the last, "
        f"{sum(completed.values())} completed runs, {len(claims)} run claims in Redis"
        + (f" ({len(unrun)} claimed but not completed: cut short?)" if unrun else "")
    )
    if found.missing:
        shown = ", ".join(f"{t:%H:%M}" for t in found.missing)
        print(f"!!! PERIODS NOT RUN: {shown} !!!")
    if found.doubled:
        shown = ", ".join(f"{t:%H:%M} ×{n}" for t, n in sorted(found.doubled.items()))
        print(f"!!! PERIODS RUN MORE THAN ONCE: {shown} !!!")
    return found


# -- main -------------------------------------------------------------------------------------


@dataclass
class Results:
    web: list[WebResult] = field(default_factory=list)
    delivery: list[DeliveryResult] = field(default_factory=list)
    drill: FailoverDrill | None = None
    periods: Periods | None = None
    # (after what, Redis's used memory in bytes, its keys, stream entries kept).
    redis: list[tuple[str, int, int, int]] = field(default_factory=list)


def redis_memory(redis_url: str, after: str) -> tuple[str, int, int, int]:
    """What Redis holds now, by key family (the sizing table's Redis memory comes from it)."""
    client = SyncRedis.from_url(redis_url)
    try:
        used = int(client.info("memory")["used_memory"])
        keys = int(client.dbsize())
        entries = int(client.xlen("deliveries")) if client.exists("deliveries") else 0
        families: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        names = list(client.scan_iter(count=1000))
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.memory_usage(name)
            usages = pipe.execute()
        for name, usage in zip(names, usages, strict=True):
            # dedupe:msg:123 → dedupe:msg; cs:window:o_… → cs:window
            family = ":".join(name.decode().split(":")[:2])
            families[family] += 1
            sizes[family] += usage or 0
    finally:
        client.close()
    print(
        f"redis after {after}: {used / 2**20:.1f} MB used, {keys:,} keys, "
        f"{entries:,} delivery stream entries",
        flush=True,
    )
    for family, size in sizes.most_common(8):
        count = families[family]
        print(
            f"    {family:<24} {count:>9,} keys  {size / 2**20:>7.1f} MB  "
            f"{size / count:>6.0f} B/key",
            flush=True,
        )
    return after, used, keys, entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=60_000, help="members loaded")
    parser.add_argument("--push", type=int, default=30_000, help="followers each push goes to")
    parser.add_argument("--requests", type=int, default=40_000, help="webhook requests per run")
    parser.add_argument("--pool", type=int, default=5_000, help="followers asking 积分")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="webhook connections (the load generator)"
    )
    parser.add_argument(
        "--send-concurrency", type=int, default=256, help="sends in flight per worker process"
    )
    parser.add_argument("--ttl", type=int, default=5, help="[scheduler] leader_ttl_seconds")
    parser.add_argument(
        "--kill-second",
        type=int,
        default=58,
        help="second of the minute the leader is killed at (58: the next period falls due "
        "while nobody leads)",
    )
    parser.add_argument(
        "--slack", type=float, default=1.0, help="seconds allowed over the TTL for a takeover"
    )
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster and scratch folder")
    parser.add_argument("--log-level", default="INFO", help="the processes' [logging] level")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for a push to finish"
    )
    args = parser.parse_args()
    if min(args.members, args.push, args.requests, args.pool, args.concurrency, args.ttl) < 1:
        parser.error("sizes, --concurrency and --ttl must be positive")
    if args.push > args.members or not 0 <= args.kill_second <= 59:
        parser.error("--push must be at most --members, --kill-second within 0-59")
    if args.log_level.upper() not in ("DEBUG", "INFO"):
        parser.error("the failover drill reads INFO lines: --log-level DEBUG or INFO")

    load1, _, _ = os.getloadavg()
    print(
        f"cluster bench: {args.members:,} members, pushes to {args.push:,}, "
        f"{args.requests:,} webhook requests at concurrency {args.concurrency}, leader TTL "
        f"{args.ttl} s (load average before: {load1:.2f} on {os.cpu_count()} CPUs)",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results = Results()
    failures: list[str] = []
    try:
        _run(args, folder, results)
    except KeyboardInterrupt:
        failures.append("interrupted")
        print("interrupted: processes stopped", flush=True)
    finally:
        if args.keep:
            print(f"scratch folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    failures += summary(results, args)
    return 1 if failures else 0


def _run(args: argparse.Namespace, folder: Path, results: Results) -> None:
    """Everything between the scratch folder's creation and its removal."""
    # fanout's write_config names the per-worker send concurrency ``concurrency``.
    fanout_args = argparse.Namespace(**{**vars(args), "concurrency": args.send_concurrency})
    with _cluster(args) as url:
        started = time.perf_counter()
        upgrade(url)  # Alembic runs its own event loop: before ours.
        print(f"migrations: {time.perf_counter() - started:.1f} s", flush=True)
        asyncio.run(load_members(_asyncpg_dsn(url), args.members, args.push))
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(redis_server())
            standin, standin_pid = stack.enter_context(standin_process(folder))
            config, settings = _write_config(folder, url, redis_url, standin, fanout_args)
            schedulers = [
                stack.enter_context(service(folder, config, f"scheduler-{n}", "scheduler"))
                for n in (1, 2)
            ]
            drill = results.drill = FailoverDrill(schedulers, redis_url, args)
            drill.start()
            stack.callback(drill.cancelled.set)
            print(f"2 schedulers up; stand-in on {standin}; config {config}", flush=True)
            results.redis.append(redis_memory(redis_url, "start-up"))
            results.web = webhook_phase(
                folder, config, settings, url, redis_url, standin_pid, schedulers, args
            )
            results.redis.append(redis_memory(redis_url, f"{args.pool:,} members asked 积分"))
            for count in (1, 2):
                results.delivery.append(
                    measure_delivery(
                        folder,
                        config,
                        url,
                        redis_url,
                        standin,
                        standin_pid,
                        schedulers,
                        count,
                        len(results.delivery),
                        fanout_args,
                    )
                )
            results.redis.append(redis_memory(redis_url, f"2 pushes to {args.push:,}"))
            one, two = results.delivery
            print(
                f"delivery: {two.rate:,.0f} / {one.rate:,.0f} deliveries/s = "
                f"{two.rate / one.rate:.2f}x with 2 worker processes",
                flush=True,
            )
            if drill.is_alive():
                print("waiting for the failover drill to finish…", flush=True)
            drill.join(200)
            if drill.is_alive():
                drill.cancelled.set()
                drill.join(5)
            results.periods = job_periods(schedulers, redis_url, drill)
            _problems(schedulers)


def summary(results: Results, args: argparse.Namespace) -> list[str]:
    """Print every figure in one table; the correctness failures."""
    failures: list[str] = []
    rows: list[tuple[str, str]] = []
    for web in results.web:
        figures = f"{web.rate:,.0f} req/s  p50 {web.p50_ms:.2f} ms  p99 {web.p99_ms:.2f} ms"
        rows.append(
            (f"webhook, {web.processes} web process(es)", f"{figures}  errors {web.errors}")
        )
        if web.errors:
            failures.append(f"webhook errors with {web.processes} web process(es)")
    if len(results.web) == 2:
        rows.append(("webhook, 2 vs 1", f"{results.web[1].rate / results.web[0].rate:.2f}x"))
    for push in results.delivery:
        figures = f"{push.rate:,.0f} deliveries/s  ({push.final:,} in {push.seconds:.1f} s)"
        once = "yes" if push.exactly_once else "NO"
        rows.append((f"delivery, {push.workers} worker(s)", f"{figures}  exactly once: {once}"))
        if not push.exactly_once:
            failures.append(f"push with {push.workers} worker(s) not exactly once")
    if len(results.delivery) == 2:
        one, two = results.delivery
        rows.append(("delivery, 2 vs 1", f"{two.rate / one.rate:.2f}x"))
    drill = results.drill
    if drill is not None:
        limit = drill.ttl + args.slack
        takeover = drill.takeover
        if takeover is None:
            rows.append(("scheduler takeover", f"none ({drill.error or 'drill unfinished'})"))
            failures.append("no scheduler takeover measured")
        else:
            left = f"{drill.key_left:.2f} s" if drill.key_left is not None else "?"
            verdict = "ok" if takeover <= limit else "SLOWER THAN THE TTL"
            bound = f"TTL {drill.ttl:.0f} s + {args.slack:g} s: {verdict}"
            rows.append(
                (
                    "scheduler takeover",
                    f"{takeover:.2f} s after SIGKILL (key had {left} left; {bound})",
                )
            )
            if takeover > limit:
                failures.append(f"takeover {takeover:.2f} s > {limit:.1f} s")
        if drill.error:
            failures.append(f"failover drill: {drill.error}")
    periods = results.periods
    if periods is not None:
        verdict = "ok" if periods.ok else "FAILED"
        figures = f"missed {len(periods.missing)}, run twice {len(periods.doubled)}: {verdict}"
        rows.append((f"job {JOB} runs", f"{len(periods.scheduled)} periods, {figures}"))
        if not periods.ok:
            failures.append("job periods not run exactly once")
    if results.delivery:
        counts = results.delivery[-1].standin
        pushes = f"{len(results.delivery)} push(es) of {args.push:,}"
        messages = f"{counts.get('template_sends', 0):,} template messages"
        rows.append(("stand-in", f"{messages}, {counts.get('distinct', 0):,} openids, {pushes}"))
    for after, used, keys, entries in results.redis:
        rows.append(
            (
                f"redis after {after}",
                f"{used / 2**20:.1f} MB, {keys:,} keys, {entries:,} stream entries",
            )
        )
    if not results.web or len(results.delivery) < 2 or periods is None:
        failures.append("the run did not finish")
    print("\nsummary")
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"  {'result':<{width}}  " + ("FAILED: " + "; ".join(failures) if failures else "ok"))
    return failures


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
