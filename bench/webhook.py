"""Webhook throughput: N unique, correctly signed text messages at concurrency C.

    python bench/webhook.py --mode plain --requests 20000 --concurrency 16
    python bench/webhook.py --mode safe  --requests 20000 --concurrency 16
    python bench/webhook.py --url http://127.0.0.1:8080/wechat --config config.toml ...

Without --url it starts its own server (--processes web-role processes sharing a free port, 1 by
default; SQLite; embedded Redis) in a scratch folder, removed at the end, with a pool of known
members; each request is one member asking 积分, so the path includes the signature check, (in
safe mode) decryption, the Redis gate, the member lookup, the router, the reply and (in safe
mode) its encryption. Requests are built and signed before the clock starts and sent over raw
keep-alive connections, so the load generator costs little of the machine's two cores. Prints
requests/s, p50, p99, max and errors; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_config  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402

AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Servers:
    """The service's processes sharing one port, stopped together."""

    processes: list[subprocess.Popen[bytes]]
    # /wechat on aiohttp's port (the route), beside the webhook's own listener.
    route_url: str = ""

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def terminate(self) -> None:
        for process in self.processes:
            process.terminate()

    def wait(self, timeout: float) -> None:
        for process in self.processes:
            process.wait(timeout)


def _start_server(
    mode: str,
    members: int,
    processes: int = 1,
    role: str = "web",
    cpus: str | None = None,
    database_url: str | None = None,
) -> tuple[Servers, Path, str]:
    """Migrate and seed a scratch database, then serve it with ``processes`` processes of
    ``role`` on one port (SO_REUSEPORT; the first starts the embedded Redis, the others join
    it); the processes, the config's path and the URL of the webhook's own listener
    (``[server] webhook_port``; ``Servers.route_url`` is /wechat on aiohttp's port).

    ``cpus``: run the servers (and so the embedded Redis they start) under ``taskset -c cpus``;
    ``database_url``: an empty database to use instead of a SQLite file in the scratch folder."""
    folder = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    port, webhook_port = _free_port(), _free_port()
    config = folder / "config.toml"
    database_url = database_url or f"sqlite:///{folder}/bot.db"
    # The load generator is the API's only caller (bench/rewards.py seeds through it): no
    # per-token rate limit.
    config.write_text(
        f'[wechat]\nappid = "wx49f0ab532d5d035a"\nsecret = "bench-secret"\n'
        f'token = "benchtoken"\nencoding_aes_key = "{AES_KEY if mode == "safe" else ""}"\n'
        f'api_base_url = "http://127.0.0.1:9"\n'
        f"[server]\nport = {port}\nwebhook_port = {webhook_port}\n"
        f'[database]\nurl = "{database_url}"\n'
        f'[redis]\nurl = ""\nembedded_path = "{folder}/redis.db"\n'
        f'[api]\ntoken = "bench-api-token-0123456789"\nrate_per_minute = 0\n',
        encoding="utf-8",
    )
    env = {**os.environ, "BOT_CONFIG": str(config)}
    subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "seed_members.py"), str(members)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    servers: list[subprocess.Popen[bytes]] = []
    pin = ["taskset", "-c", cpus] if cpus else []
    for n in range(processes):
        log = (folder / f"server-{n}.log").open("wb")
        servers.append(
            subprocess.Popen(
                [*pin, sys.executable, "-m", "bot", "serve", "--role", role],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        if not _listening(port, folder / f"server-{n}.log", n):
            for server in servers:
                server.kill()
            raise SystemExit(f"server did not start; see {folder / f'server-{n}.log'}")
    route = f"http://127.0.0.1:{port}/wechat"
    return Servers(servers, route), config, f"http://127.0.0.1:{webhook_port}/wechat"


def _listening(port: int, log: Path, started_before: int) -> bool:
    """Wait until the newest process serves: the port answers (for the first) or its log says
    it serves (for those joining a port already open)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if started_before:
            if b"serving on" in log.read_bytes():
                return True
        else:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                pass
        time.sleep(0.1)
    return False


def _server_cpu(server: Servers | None) -> float:
    if server is None:
        return 0.0
    total = 0.0
    for pid in server.pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _steal_ticks() -> int:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def _build_requests(
    client: WebhookClient,
    url: str,
    n: int,
    members: int,
    openid_format: str = "o_bench_{:07d}",
    first_member: int = 0,
    message: Callable[[int], tuple[str, str]] | None = None,
) -> list[bytes]:
    """``n`` signed requests, 积分 from the pool's members in turn; ``message``: the request
    number's openid and text instead."""
    parts = urlsplit(url)
    requests = []
    for i in range(n):
        if message is None:
            openid, text = openid_format.format(i % members + first_member), "积分"
        else:
            openid, text = message(i)
        signed = client.sign(client.text(openid, text, msg_id=secrets.randbits(62) + 1))
        head = (
            f"POST {parts.path}?{urlencode(signed.params)} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(signed.body)}\r\n\r\n"
        )
        requests.append(head.encode() + signed.body)
    return requests


async def _run(url: str, requests: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = 0
    position = 0

    async def worker() -> None:
        nonlocal position, errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while position < len(requests):
            request = requests[position]
            position += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b"<xml>"):
                errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["plain", "safe"], default="plain")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--members", type=int, default=5000, help="size of the member pool")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests before timing (default: one per member, so every member "
        "has written before; 0 measures first contacts too)",
    )
    parser.add_argument(
        "--openids",
        default="o_bench_{:07d}",
        help="format of the pool's openids (bench/ledger.py: o_bench_{:08d})",
    )
    parser.add_argument("--first", type=int, default=0, help="number of the pool's first member")
    parser.add_argument(
        "--processes", type=int, default=1, help="web processes sharing the port (default 1)"
    )
    parser.add_argument(
        "--aiohttp-route",
        action="store_true",
        help="send to /wechat on aiohttp's port, not to the webhook's own listener",
    )
    parser.add_argument("--url", help="an already running server's /wechat (else start one)")
    parser.add_argument("--config", help="with --url: the config holding its token and key")
    args = parser.parse_args()

    server = None
    if args.url:
        config = load_config(args.config)
        url = args.url
    else:
        server, config_path, url = _start_server(args.mode, args.members, args.processes)
        config = load_config(str(config_path))
        if args.aiohttp_route:
            url = server.route_url
    wechat = config.wechat
    client = WebhookClient(
        wechat.token.get_secret_value(), wechat.appid, wechat.encoding_aes_key.get_secret_value()
    )
    try:
        import uvloop

        warmup = args.members if args.warmup is None else args.warmup
        if warmup:
            uvloop.run(
                _run(
                    url,
                    _build_requests(client, url, warmup, args.members, args.openids, args.first),
                    args.concurrency,
                )
            )
        requests = _build_requests(
            client, url, args.requests, args.members, args.openids, args.first
        )
        before, steal_before = _server_cpu(server), _steal_ticks()
        elapsed, latencies, errors = uvloop.run(_run(url, requests, args.concurrency))
        cpu, steal = _server_cpu(server) - before, _steal_ticks() - steal_before
        pids = server.pids if server is not None else []
        rss = [psutil.Process(pid).memory_info().rss / 2**20 for pid in pids]
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
            # A run leaves a few dozen MB (the database, Redis's append-only file, logs).
            shutil.rmtree(config_path.parent, ignore_errors=True)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"webhook mode={args.mode} requests={len(latencies)} concurrency={args.concurrency} "
        f"members={args.members} warmup={warmup} processes={args.processes}"
    )
    print(f"  throughput {len(latencies) / elapsed:,.0f} requests/s")
    print(f"  latency    p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {latencies[-1] * 1000:.2f} ms")
    print(f"  errors     {errors}")
    if server is not None:
        # Throughput moves with what else the machine does; CPU per request does not.
        print(
            f"  server CPU {cpu / len(latencies) * 1e6:.0f} us/request "
            f"(user+system; steal during run {steal / os.sysconf('SC_CLK_TCK'):.2f} s)"
        )
        print(f"  server RSS {', '.join(f'{mb:.0f}' for mb in rss)} MB after the run")


if __name__ == "__main__":
    main()
