"""Points catalogue benchmarks, one function a part (``--part``):

    python bench/rewards.py --part redemption --members 2000 --stock 1500 --concurrency 32
    python bench/rewards.py --part redemption --postgres --seed-members 1000000

``redemption``: redemption through the signed webhook. bench/webhook.py's server (the web
role, SQLite or with ``--postgres`` a throwaway PostgreSQL holding ``--seed-members``, embedded
Redis) runs pinned to core 0 (``taskset -c 0``); this process, the load
generator, pins itself to core 1, as bench/peers.py does. ``--members`` seeded members get
points by an order each (the API) and one item with ``--stock`` left is added (the API); on
PostgreSQL the database is then vacuumed and analysed (as autovacuum would have done in a
database that has been running); each member sends 「兑换 1」 (not measured: it asks for
confirmation), then ``--warmup`` further members' 「确认」 go first, not measured (so each of
the server's pooled connections in use has run the redemption once, as in a server that has
been up a while: PL/pgSQL plans a function's statements on each connection's first call; their
items are added to the stock), then every member's 「确认」 is sent at
``--concurrency`` and measured: requests/s, p50, p99, max, the server's CPU per redemption (its
processes; its Redis apart), and whether the stock ends exact (stock left = stock −
redemptions, redemptions = min(stock, members), every one pending for pickup).

Further parts (the benefit rules' timings) are added as functions beside ``redemption`` and
named in ``PARTS``. Exits 1 when the stock is not exact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.request import Request, urlopen

import asyncpg
import uvloop

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import pg  # noqa: E402
import webhook as ours  # noqa: E402
from peers import LOAD_CPU, SERVER_CPU, _cpu, _embedded_redis, _ours  # noqa: E402

API_TOKEN = "bench-api-token-0123456789"  # bench/webhook.py's config
OPENIDS = "o_bench_{:07d}"


def _api(url: str, method: str, path: str, body: object = None) -> object:
    base = url.removesuffix("/wechat")
    request = Request(
        f"{base}/api/v1{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    with urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def _vacuum(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def redemption(args: argparse.Namespace) -> bool:
    """Redeem through the webhook at ``--concurrency``; True when the stock ends exact."""
    everyone = args.warmup + args.members
    seeded = max(everyone, args.seed_members)
    with _ours("plain", seeded, args.database_url) as server:
        url, client = server.target.url, server.client
        for n in range(everyone):
            _api(
                url,
                "POST",
                "/orders",
                {
                    "order_id": f"bench-rw-{n}",
                    "openid": OPENIDS.format(n),
                    "amount_fen": 100_000,
                    "paid_at": "2026-12-01T10:00:00+08:00",
                    "channel": "pos",
                },
            )
        item = _api(
            url,
            "POST",
            "/rewards",
            {
                "name": "bench gift",
                "kind": "gift",
                "delivery": "pickup",
                "points_price": 100,
                "stock": args.stock + args.warmup,
            },
        )
        assert isinstance(item, dict)
        if args.database_url:
            # A database that has been running holds no million rows its autovacuum has yet
            # to visit; just seeded, it would do so during the measurement, on this core.
            uvloop.run(_vacuum(args.database_url))

        def says(text: str) -> Callable[[int], tuple[str, str]]:
            return lambda i: (OPENIDS.format(i), text)

        picks = ours._build_requests(client, url, everyone, everyone, message=says("兑换 1"))
        uvloop.run(ours._run(url, picks, args.concurrency))
        confirms = ours._build_requests(client, url, everyone, everyone, message=says("确认"))
        # The first members' confirmations are the warm-up; the rest are measured.
        uvloop.run(ours._run(url, confirms[: args.warmup], args.concurrency))
        confirms = confirms[args.warmup :]
        pids, redis = server.target.server(), _embedded_redis(server.folder)
        cpu_before, redis_before = _cpu(pids), _cpu(redis)
        elapsed, latencies, errors = uvloop.run(ours._run(url, confirms, args.concurrency))
        cpu, redis_cpu = _cpu(pids) - cpu_before, _cpu(redis) - redis_before
        after = _api(url, "GET", f"/rewards/{item['id']}")
        pending = _api(url, "GET", "/fulfilments?limit=500")
    assert isinstance(after, dict)
    assert isinstance(pending, dict)
    expected = min(args.stock, args.members)
    redeemed = args.warmup + expected
    exact = (
        after["stock"] == args.stock - expected
        and after["redeemed"] == redeemed
        and (redeemed > 500 or len(pending["fulfilments"]) == redeemed)
    )
    latencies.sort()
    print(
        f"redemption c{args.concurrency}: {len(latencies)} 确认 in {elapsed:.2f} s "
        f"({len(latencies) / elapsed:.0f}/s), p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms, errors {errors}; "
        f"CPU per redemption {cpu / max(expected, 1) * 1e6:.0f} µs "
        f"(Redis {redis_cpu / len(latencies) * 1e6:.0f} µs per request); "
        f"stock {args.stock} → {after['stock']}, redeemed {after['redeemed']} "
        f"(expected {args.warmup} warming up + {expected}): {'exact' if exact else 'NOT EXACT'}"
    )
    return exact


PARTS: dict[str, Callable[[argparse.Namespace], bool]] = {"redemption": redemption}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--stock", type=int, default=1500)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="serve a throwaway PostgreSQL (bench/pg.py, on the load generator's core), not SQLite",
    )
    parser.add_argument(
        "--seed-members", type=int, default=0, help="members in the database (at least --members)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--warmup", type=int, default=64, help="members whose 确认 go first, not measured"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CPU})
    print(f"server on core {SERVER_CPU}, load on core {LOAD_CPU}", file=sys.stderr)
    started = time.monotonic()
    args.database_url, cluster = None, None
    if args.postgres:
        # Started from here, PostgreSQL inherits the load generator's core.
        cluster, args.database_url = pg.start()
    try:
        ok = all(PARTS[name](args) for name in (PARTS if args.part == "all" else [args.part]))
    finally:
        if cluster is not None:
            pg.stop(cluster)
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
