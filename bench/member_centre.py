"""The member centre's pages at scale: weight and server time (time to first byte) per page.

    python bench/member_centre.py                      # 1,000,000 members: about 10 minutes
    python bench/member_centre.py --members 20000      # a quick check
    python bench/member_centre.py --url postgresql+asyncpg://postgres@127.0.0.1:PORT/db --no-load

A throwaway PostgreSQL cluster (bench/pg.py) is loaded with bench/fastseed.py's brand (orders,
ledger entries and lots, coupons for about three members in four), then the real app serves
the centre on a free port with an embedded Redis. Sampled members are signed in with a session
cookie made by the app's own key (the OAuth round trip is WeChat's time, not ours) and each
page is asked for in turn, one request at a time over loopback, so the time to the first byte
is the server's time. Printed per page: p50, p95 and worst TTFB, and the heaviest page in
bytes. The goals (issue 22): under 50 ms and under 100 KB per page at 1,000,000 members.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import fastseed  # noqa: E402  (bench/fastseed.py: a million-member brand, set-based)
import pg  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.app import WEB, create_app  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.database import create_engine  # noqa: E402
from bot.migrate import upgrade  # noqa: E402
from bot.pages.session import AUTH, SESSION_COOKIE, CentreAuth  # noqa: E402

PAGES = ("/m/", "/m/code", "/m/coupons", "/m/rewards", "/m/points", "/m/orders", "/m/profile")
# The points catalogue a brand might run: this many items, priced from 100 to 20,000 points.
CATALOGUE_ITEMS = 40
GOAL_MS = 50.0
GOAL_BYTES = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url
        return
    process, url = pg.start()
    try:
        yield url
    finally:
        pg.stop(process)


def _config(url: str, port: int, folder: str) -> Config:
    return Config.model_validate(
        {
            "wechat": {"appid": "wxbench", "secret": "bench-secret", "token": "benchtoken"},
            "server": {"public_url": f"http://127.0.0.1:{port}"},
            "database": {"url": url},
            "redis": {"url": "", "embedded_path": f"{folder}/redis.db"},
            "api": {"token": "bench-api-token-0001"},
            "delivery": {"workers": 0},
            "scheduler": {"enabled": False},
            "member_centre": {"secret": "bench-centre-secret"},
        }
    )


async def _sample(url: str, count: int) -> list[tuple[int, str]]:
    """Members to sign in: random, weighted toward those with the most to show."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            busy = await connection.execute(
                text(
                    "SELECT m.id, m.openid FROM members m JOIN (SELECT member_id FROM orders "
                    "GROUP BY member_id ORDER BY count(*) DESC LIMIT :n) o ON o.member_id = m.id"
                ),
                {"n": count // 4},
            )
            anyone = await connection.execute(
                text(
                    "SELECT id, openid FROM members WHERE openid IS NOT NULL "
                    "ORDER BY random() LIMIT :n"
                ),
                {"n": count - count // 4},
            )
            return [(row[0], row[1]) for row in [*busy, *anyone]]
    finally:
        await engine.dispose()


async def _catalogue(url: str, count: int) -> None:
    """A catalogue of ``count`` items, if there is none: coupons, gifts with stock, a monthly
    limit on some, a tier-only one, images on the brand's host (the page lists each)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            if await connection.scalar(text("SELECT count(*) FROM reward_items")):
                return
            now = datetime.now(UTC)
            rows = [
                {
                    "name": f"礼品 {n + 1}",
                    "kind": "coupon" if n % 4 == 0 else "gift",
                    "coupon_kind": "cash_10" if n % 4 == 0 else None,
                    "delivery": None if n % 4 == 0 else "pickup",
                    "price": 100 + n * 500,
                    "cash": 0 if n % 4 == 0 else (n % 3) * 990,
                    "stock": None if n % 2 else 1000,
                    "limit_count": 1 if n % 5 == 0 else None,
                    "tiers": '["gold", "diamond"]' if n % 10 == 9 else "[]",
                    "image": f"https://img.example.com/rewards/{n + 1}.jpg",
                    "now": now,
                }
                for n in range(count)
            ]
            await connection.execute(
                text(
                    "INSERT INTO reward_items (name, description, kind, coupon_kind, delivery, "
                    "points_price, cash_fen, stock, limit_count, limit_period, tiers, "
                    "early_tiers, image_url, status, created_at, updated_at) VALUES (:name, '', "
                    ":kind, :coupon_kind, :delivery, :price, :cash, :stock, :limit_count, "
                    "'month', CAST(:tiers AS json), '[]', :image, 'active', :now, :now)"
                ),
                rows,
            )
    finally:
        await engine.dispose()


async def measure(url: str, members: int) -> bool:
    """Serve the centre and time every page for ``members`` sampled members; True if every
    page met both goals."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-centre-") as folder:
        app = create_app(_config(url, port, folder), roles=(WEB,))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            cookies = [_cookie(app[AUTH], member) for member in await _sample(url, members)]
            times: dict[str, list[float]] = {path: [] for path in PAGES}
            heaviest: dict[str, int] = dict.fromkeys(PAGES, 0)
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as http:
                # Warm the pool and the statement caches: the first request is not the figure.
                for path in PAGES:
                    await _get(http, port, cookies[0], path)
                random.shuffle(cookies)
                for cookie in cookies:
                    for path in PAGES:
                        ttfb, size = await _get(http, port, cookie, path)
                        times[path].append(ttfb)
                        heaviest[path] = max(heaviest[path], size)
        finally:
            await runner.cleanup()
    ok = True
    print(f"{'page':<12}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'max KB':>9}  verdict")
    for path in PAGES:
        ms = sorted(t * 1000 for t in times[path])
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        met = p95 < GOAL_MS and heaviest[path] < GOAL_BYTES
        ok = ok and met
        print(
            f"{path:<12}{statistics.median(ms):>9.1f}{p95:>9.1f}{ms[-1]:>9.1f}"
            f"{heaviest[path] / 1000:>9.1f}  {'ok' if met else 'over the goal'}"
        )
    return ok


def _cookie(auth: CentreAuth, member: tuple[int, str]) -> str:
    """The session cookie the centre would set for ``member`` after WeChat's authorisation."""
    holder = web.Response()
    auth.sign_in(holder, member[0], member[1])
    return holder.cookies[SESSION_COOKIE].value


async def _get(http: aiohttp.ClientSession, port: int, cookie: str, path: str) -> tuple[float, int]:
    """One page with one member's session: (seconds to the first byte, bytes)."""
    started = time.perf_counter()
    async with http.get(
        f"http://127.0.0.1:{port}{path}", cookies={SESSION_COOKIE: cookie}, allow_redirects=False
    ) as response:
        ttfb = time.perf_counter() - started
        body = await response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
    return ttfb, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="members in the brand")
    parser.add_argument("--sample", type=int, default=200, help="members whose pages are timed")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy asyncpg URL)")
    parser.add_argument("--no-load", action="store_true", help="with --url: the data is there")
    args = parser.parse_args()
    if args.no_load and not args.url:
        parser.error("--no-load needs --url")
    with _cluster(args) as url:
        load1, _, _ = os.getloadavg()
        print(
            f"member centre bench: members={args.members:,} sample={args.sample} "
            f"(load average before: {load1:.2f} on {os.cpu_count()} CPUs)",
            flush=True,
        )
        upgrade(url)
        if not args.no_load:
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            took = asyncio.run(fastseed.fast_seed(dsn, args.members, datetime.now(UTC)))
            print(f"loaded in {took:.0f} s", flush=True)
        asyncio.run(_catalogue(url, CATALOGUE_ITEMS))
        ok = asyncio.run(measure(url, args.sample))
    print("goals met" if ok else "some page missed a goal (see above)")


if __name__ == "__main__":
    main()
