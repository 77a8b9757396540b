"""Two revisions of ours on the same core, measured in alternating bursts.

    python bench/ab.py BASE [--against REV] [--mode plain|safe] [--rounds 8] [--requests 5000]

On a machine whose speed drifts by half within minutes (this project's bench machine, shared
with others), runs of the same code minutes apart differ more than most changes do. Here both
revisions serve at once, each one web process with its embedded Redis pinned to core 0 (the
load generator on core 1, as in bench/peers.py); the load goes to one, then the other, in short
bursts, the order swapped each round, so each phase of the machine falls on both. Prints each
burst's requests/s, CPU per message of the serving process and of its Redis, and p99, then
the medians and the median of the rounds' ratios (``--against`` over ``BASE``).

``BASE`` and ``--against`` are git revisions, checked out in scratch worktrees (removed at the
end); ``--against`` defaults to this checkout as it is, uncommitted changes included.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psutil
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import webhook as ours  # noqa: E402
from fanout import _stop  # noqa: E402

from bot.config import load_config  # noqa: E402
from bot.wechat.webhook_client import WebhookClient  # noqa: E402


@dataclass
class Side:
    name: str
    url: str
    pids: list[int]
    redis: list[int]
    client: WebhookClient
    rows: list[tuple[float, float, float, float]]  # req/s, CPU µs/msg, Redis µs/msg, p99 ms


@contextmanager
def _worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a scratch folder, or this checkout for ``.``."""
    if revision == ".":
        yield BENCH.parent
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    folder = scratch / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(folder), revision],
        cwd=BENCH.parent,
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(folder)], cwd=BENCH.parent, check=False
        )
        shutil.rmtree(scratch, ignore_errors=True)


def _bench_module(tree: Path, name: str) -> ModuleType:
    """That tree's bench/webhook.py: its servers run that tree's code (``python -m bot`` from
    there); the load generator's signing is this checkout's."""
    spec = importlib.util.spec_from_file_location(name, tree / "bench" / "webhook.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no bench/webhook.py in {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextmanager
def _serving(module: ModuleType, name: str, args: argparse.Namespace) -> Iterator[Side]:
    servers, config_path, url = module._start_server(args.mode, args.members, cpus=peers.SERVER_CPU)
    folder = config_path.parent
    try:
        wechat = load_config(str(config_path)).wechat
        client = WebhookClient(
            wechat.token.get_secret_value(),
            wechat.appid,
            wechat.encoding_aes_key.get_secret_value(),
        )
        warmup = ours._build_requests(client, url, args.members, args.members)
        uvloop.run(ours._run(url, warmup, args.concurrency))
        yield Side(name, url, servers.pids, peers._embedded_redis(folder), client, [])
    finally:
        redis = peers._embedded_redis(folder)
        for process in servers.processes:
            _stop(process)
        for leftover in psutil.wait_procs([psutil.Process(pid) for pid in redis], 5)[1]:
            leftover.terminate()
        shutil.rmtree(folder, ignore_errors=True)


def _burst(side: Side, args: argparse.Namespace) -> None:
    # Signed before the clock starts, with MsgIds new to the server (a repeated one would be
    # answered from the gate's dedupe record).
    requests = ours._build_requests(side.client, side.url, args.requests, args.members)
    cpu, redis = peers._cpu(side.pids), peers._cpu(side.redis)
    elapsed, latencies, errors = uvloop.run(ours._run(side.url, requests, args.concurrency))
    n = len(latencies)
    if errors:
        raise SystemExit(f"{side.name}: {errors} errors in a burst")
    side.rows.append(
        (
            n / elapsed,
            (peers._cpu(side.pids) - cpu) / n * 1e6,
            (peers._cpu(side.redis) - redis) / n * 1e6,
            sorted(latencies)[int(n * 0.99)] * 1000,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="git revision measured against")
    parser.add_argument("--against", default=".", help="git revision, or . for this checkout")
    parser.add_argument("--mode", choices=["plain", "safe"], default="plain")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5000, help="per burst")
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    os.sched_setaffinity(0, {peers.LOAD_CPU})
    with ExitStack() as stack:
        sides = []
        for label, revision in (("base", args.base), ("against", args.against)):
            tree = stack.enter_context(_worktree(revision))
            module = _bench_module(tree, f"bench_webhook_{label}")
            sides.append(stack.enter_context(_serving(module, f"{label} ({revision})", args)))
        for round_number in range(args.rounds):
            for side in sides if round_number % 2 == 0 else reversed(sides):
                _burst(side, args)
        _report(sides)


def _report(sides: list[Side]) -> None:
    header = f"{'burst':<28} {'req/s':>8} {'CPU us/msg':>11} {'Redis us':>9} {'p99 ms':>7}"
    print(header)
    for side in sides:
        for number, (rate, cpu, redis, p99) in enumerate(side.rows, 1):
            figures = f"{rate:>8,.0f} {cpu:>11.1f} {redis:>9.1f} {p99:>7.2f}"
            print(f"{side.name:<22} #{number:<4} {figures}")
    base, against = sides
    print("medians:")
    for side in sides:
        columns = list(zip(*side.rows, strict=True))
        rate, cpu, redis, p99 = (statistics.median(column) for column in columns)
        print(f"  {side.name:<26} {rate:>8,.0f} {cpu:>11.1f} {redis:>9.1f} {p99:>7.2f}")
    pairs = list(zip(base.rows, against.rows, strict=True))
    print(
        "median of the rounds' ratios (against / base): "
        f"req/s {statistics.median(b[0] / a[0] for a, b in pairs):.3f}, "
        f"CPU {statistics.median(b[1] / a[1] for a, b in pairs):.3f}, "
        f"Redis {statistics.median(b[2] / a[2] for a, b in pairs):.3f}"
    )


if __name__ == "__main__":
    main()
