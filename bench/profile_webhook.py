"""Where the webhook's serving process spends its busy time under bench/peers.py's load.

    python bench/profile_webhook.py [--mode plain|safe] [--mixed] [--requests 30000]

Starts ours as bench/peers.py does (one web process and its embedded Redis on core 0, this
process generating the load on core 1), warms it up, then samples the serving process with
py-spy (bench/requirements.txt) while the load runs. Prints the share of its busy samples (py-spy
leaves out the samples where it waits for the network) spent in each part of the request, and
the functions with the most samples of their own. ``--output`` keeps py-spy's collapsed stacks.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import webhook as ours  # noqa: E402

# A sample counts for the part its innermost matching frame belongs to (the first of the list
# that frame matches); a sample whose innermost frame is run_app is uvloop's own C code.
EVENT_LOOP = "event loop (uvloop's C code: epoll, socket I/O, callbacks)"
# py-spy samples wall time, and a process preempted is not idle to it: the write that wakes
# the Redis beside it on the same core is where it mostly waits while Redis (or anything else
# on that core) runs. perf put the process's whole kernel time at about a tenth of its CPU, so
# this part is mostly that wait, shown apart from the pipe's own Python.
PIPE_WRITE = "Redis pipe's socket write (mostly preempted: Redis runs on the same core)"
PARTS: list[tuple[str, tuple[str, ...]]] = [
    (PIPE_WRITE, ("_Protocol.flush (bot/wechat/redis_pipe.py",)),
    (
        "request log line and its middleware",
        ("logging/__init__.py", "bot/logs.py", "request_log.py"),
    ),
    ("metrics (prometheus_client)", ("prometheus_client", "bot/metrics.py")),
    ("Redis pipe (Python: pack, futures, deadlines, replies)", ("redis_pipe.py", "hiredis")),
    ("XML parse (wechatpy/xmltodict)", ("parse_inbound", "xmltodict", "wechatpy/parser")),
    ("reply render", ("render_reply", "wechatpy/replies")),
    ("AES (safe mode)", ("wechatpy/crypto", "cryptography")),
    ("signature check", ("_check_signature", "check_signature")),
    ("SQL (SQLAlchemy, aiosqlite, asyncpg)", ("sqlalchemy", "aiosqlite", "asyncpg")),
    ("handlers and dispatcher", ("handlers/", "messages/")),
    ("webhook's own code", ("bot/wechat/webhook.py", "bot/wechat/gate.py")),
    ("webhook's listener (HTTP over httptools)", ("bot/wechat/listener.py", "httptools")),
    (
        "aiohttp (HTTP parse, request, response)",
        ("aiohttp/web_", "aiohttp/http", "aiohttp/streams", "aiohttp/helpers", "multidict", "yarl"),
    ),
    ("asyncio / uvloop (tasks, wait, timers)", ("asyncio/", "uvloop", "<built-in>")),
]


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in PARTS:
            if any(pattern in frame for pattern in patterns):
                return name
    return EVENT_LOOP if "run_app (aiohttp/web.py" in frames[-1] else "other"


def summarise(collapsed: Path, top: int = 25) -> str:
    """The breakdown of py-spy's collapsed stacks: by part, then by function's own samples."""
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        own[frames[-1]] += count
        parts[_part(frames)] += count
    python = total - parts[PIPE_WRITE] - parts[EVENT_LOOP]
    head = (
        f"busy samples: {total}; by part (its innermost frame that matches), as a share of all"
        " busy samples and of those in Python code (neither the pipe's write nor the loop's C):"
    )
    lines = [head]
    for name in [*(name for name, _ in PARTS), EVENT_LOOP, "other"]:
        if parts[name]:
            share = "" if name in (PIPE_WRITE, EVENT_LOOP) else f"{parts[name] / python:6.1%}"
            lines.append(f"  {parts[name] / total:6.1%} {share:>6}  {name}")
    lines.append(f"functions with the most samples of their own (top {top}):")
    for frame, count in own.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["plain", "safe"], default="plain")
    parser.add_argument("--mixed", action="store_true", help="the mixed load of bench/peers.py")
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--output", help="keep py-spy's collapsed stacks in this file")
    args = parser.parse_args()
    os.sched_setaffinity(0, {peers.LOAD_CPU})
    folder = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    collapsed = Path(args.output) if args.output else folder / "profile.txt"
    seeded = args.members // 2 if args.mixed else args.members
    with peers._ours(args.mode, seeded) as server:
        client, url = server.client, server.target.url
        if args.mixed:
            warmup = ours._build_requests(client, url, seeded, seeded)
            requests = peers._mixed_requests(client, url, args.requests, args.members)
        else:
            warmup = ours._build_requests(client, url, args.members, args.members)
            requests = ours._build_requests(client, url, args.requests, args.members)
        uvloop.run(ours._run(url, warmup, args.concurrency))
        spy = subprocess.Popen(
            [
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record", "--pid", str(server.target.server()[0]), "--rate", str(args.rate),
                "--format", "raw", "--output", str(collapsed), "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        process = psutil.Process(server.target.server()[0])
        cpu, switches = process.cpu_times(), process.num_ctx_switches()
        try:
            elapsed, latencies, errors = uvloop.run(ours._run(url, requests, args.concurrency))
            cpu_after, switches_after = process.cpu_times(), process.num_ctx_switches()
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            _, stderr = spy.communicate(timeout=60)
        shutil.rmtree(server.folder, ignore_errors=True)
    n = len(latencies)
    used = cpu_after.user + cpu_after.system - cpu.user - cpu.system
    print(
        f"profile mode={args.mode} mixed={args.mixed} requests={n} "
        f"concurrency={args.concurrency}: {n / elapsed:,.0f} requests/s, {errors} errors; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        f"serving process: {used / n * 1e6:.0f} us CPU per request (sampled by py-spy); "
        f"per request {(switches_after.voluntary - switches.voluntary) / n:.2f} voluntary and "
        f"{(switches_after.involuntary - switches.involuntary) / n:.2f} involuntary context "
        f"switches; busy {used / elapsed:.0%} of the run"
    )
    if not collapsed.exists():
        raise SystemExit(f"py-spy wrote nothing: {stderr.decode()[-500:]}")
    print(summarise(collapsed))
    if not args.output:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
