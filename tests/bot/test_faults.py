"""Faults with real processes: the service (``python -m bot serve``) on its own PostgreSQL and a
persistent redis-server, the WeChat stand-in, and members writing all the while. WeChat fails
(-1, 45009, HTTP 500, every token invalidated, an answer later than the client waits), then
Redis stops and comes back, then PostgreSQL does. Throughout, every webhook answer comes within
WeChat's 5 s (a short 系统繁忙 where it must); /healthz names what is down; everything recovers
by itself; and every push reaches its member exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.database import create_engine, create_sessionmaker
from bot.migrate import upgrade
from messages import copy
from models.deliveries import Delivery
from tests.conftest import API_TOKEN, APPID, SECRET, TOKEN
from tests.helpers import PLAIN, ROOT, run_bot
from tests.services import (
    STARTUP_SECONDS,
    STOP_GRACE_SECONDS,
    PostgresServer,
    child_process,
    free_port,
    marked,
    postgres_bin_dir,
    postgres_server,
    redis_server,
)
from tests.wechat_standin import Fault, WeChatStandIn

TEMPLATE = "/cgi-bin/message/template/send"
MEMBERS = [f"o_fault_member{n:03d}" for n in range(20)]
WITHIN = 5.0  # WeChat stops waiting after 5 s


@dataclass
class Answer:
    at: float
    seconds: float
    status: int
    text: str  # the reply's content, "success", or what went wrong


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    if postgres_bin_dir() is None:
        if os.environ.get("BOT_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL required but initdb/pg_ctl are not installed")
        pytest.skip("PostgreSQL not installed")
    with postgres_server() as server:
        yield server


class Service:
    """``python -m bot serve`` as a process of its own: ``async with Service(...)`` starts it
    and waits until /healthz says everything is up; leaving the block, however, stops it and
    whatever it started (tests/services.py's ``child_process``), including the embedded Redis
    server working in ``data``."""

    def __init__(
        self,
        folder: Path,
        config: Path,
        port: int,
        data: Path | None = None,
        startup: float = STARTUP_SECONDS,
        grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = folder / "service.log"
        self._config = config
        self._data = data
        self._startup = startup
        self._grace = grace
        self._running = contextlib.AsyncExitStack()
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Service:
        log = self._running.enter_context(self._log.open("ab"))
        command = (sys.executable, "-m", "bot", "--config", str(self._config), "serve")
        started = child_process(
            *command, grace=self._grace, folder=self._data, stdout=log, stderr=log, cwd=ROOT
        )
        try:
            self.process = await self._running.enter_async_context(started)
            await self.healthy(self._startup)
        except BaseException:
            await self._running.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._running.aclose()

    async def healthy(self, within: float) -> None:
        """Wait until /healthz says everything is up (at most ``within`` seconds)."""
        try:
            async with asyncio.timeout(within):
                while (await self.health())[0] != 200:
                    if self.process is not None and self.process.returncode is not None:
                        raise AssertionError(f"the service exited:\n{self.log_tail()}")
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(
                f"the service was not healthy within {within} s:\n{self.log_tail()}"
            ) from None

    async def health(self) -> tuple[int, dict[str, Any]]:
        """/healthz's status and body; (0, {}) while it does not answer."""
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=30)) as r,
            ):
                return r.status, await r.json()
        except (aiohttp.ClientError, TimeoutError):
            return 0, {}

    def log_tail(self) -> str:
        if not self._log.exists():
            return "(no log)"
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-40:])


async def _talk(url: str, stop: asyncio.Event, answers: list[Answer]) -> None:
    """Members asking 积分 all the while, each message new (as WeChat sends them)."""
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            n += 1
            request = PLAIN.sign(PLAIN.text(MEMBERS[n % len(MEMBERS)], "积分", msg_id=90_000 + n))
            started = time.monotonic()
            try:
                async with http.post(
                    f"{url}/wechat",
                    params=request.params,
                    data=request.body,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    status, body = response.status, await response.text()
                reply = PLAIN.read_reply(body, request) if status == 200 else None
                text = reply["Content"] if reply else body
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, type(exc).__name__
            answers.append(Answer(started, time.monotonic() - started, status, text))
            await asyncio.sleep(0.05)


async def _api(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response,
    ):
        return response.status, await response.json()


def _order(order_id: str, openid: str, fen: int) -> dict[str, Any]:
    paid = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return {
        "order_id": order_id,
        "openid": openid,
        "amount_fen": fen,
        "paid_at": paid,
        "channel": "pos",
    }


async def _pushes(url: str) -> list[Delivery]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            query = select(Delivery).where(Delivery.purpose == "tier_upgraded")
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


async def _settled(url: str, count: int) -> list[Delivery]:
    async with asyncio.timeout(STARTUP_SECONDS):
        while True:
            rows = await _pushes(url)
            if len(rows) >= count and all(r.status not in ("queued", "sending") for r in rows):
                return rows
            await asyncio.sleep(0.3)


def _replied(answer: Answer) -> bool:
    return answer.text not in (copy.BUSY, "success", "")


async def _answered_since(answers: list[Answer], since: float) -> None:
    """Wait until a member gets a real answer (not 系统繁忙) sent after ``since``."""
    async with asyncio.timeout(STARTUP_SECONDS):
        while not any(a.at > since and _replied(a) for a in answers):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _talking(url: str) -> AsyncIterator[list[Answer]]:
    answers: list[Answer] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_talk(url, stop, answers))
    try:
        yield answers
    finally:
        stop.set()
        await task


async def test_the_service_rides_out_wechat_redis_and_database_faults(
    pg: PostgresServer, standin: WeChatStandIn, tmp_path: Path
) -> None:
    await asyncio.to_thread(upgrade, pg.url)
    redis_folder = tmp_path / "redis"
    redis_folder.mkdir()
    redis = contextlib.ExitStack()
    redis_url = redis.enter_context(redis_server(redis_folder, persistent=True))
    port = free_port()
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'api_base_url = "{standin.server.make_url("")}"\n'  # type: ignore[attr-defined]
        "api_timeout_seconds = 1.0\napi_backoff_seconds = 0.05\n"
        f'[server]\nport = {port}\n[database]\nurl = "{pg.url}"\n'
        f'[redis]\nurl = "{redis_url}"\n[api]\ntoken = "{API_TOKEN}"\n'
        "[delivery]\nretry_base_seconds = 0.3\nretry_max_seconds = 1.0\nmax_attempts = 10\n"
        '[delivery.templates.tier_upgraded]\ntemplate_id = "TPL_TIER"\n'
        'fields = { first = "title", keyword1 = "tier" }\n'
        "[scheduler]\nenabled = false\n",
        encoding="utf-8",
    )
    service = Service(tmp_path, config, port)
    try:
        async with service, _talking(service.url) as answers:
            for openid in MEMBERS:
                async with aiohttp.ClientSession() as http:
                    request = PLAIN.sign(PLAIN.event(openid, "subscribe"))
                    await http.post(
                        f"{service.url}/wechat", params=request.params, data=request.body
                    )

            # 1. WeChat fails: busy, over quota, a 500, every token invalidated. First one push
            # goes through, so the service holds a token to lose.
            status, body = await _api(
                service.url, "POST", "/orders", _order("F-0", MEMBERS[0], 200_000)
            )
            assert status == 201, body
            await _settled(pg.url, 1)
            assert standin.token_fetches == 1
            standin.invalidate_all_tokens()
            standin.fail_next(
                TEMPLATE,
                Fault(errcode=-1),
                Fault(errcode=45009),
                Fault(errcode=45009),
                Fault(http_status=500),
                Fault(errcode=-1),
            )
            for n, openid in enumerate(MEMBERS[1:], start=1):
                status, body = await _api(
                    service.url, "POST", "/orders", _order(f"F-{n}", openid, 200_000)
                )
                assert status == 201, body
            rows = await _settled(pg.url, len(MEMBERS))
            assert standin.token_fetches == 2  # the invalidated token was replaced, once
            assert Counter((r.status, r.reason) for r in rows) == {("sent", None): 20}
            sent_to = Counter(body["touser"] for body in standin.sent(TEMPLATE))
            assert sent_to == dict.fromkeys(MEMBERS, 1)  # every member once: none lost, none twice

            # 2. Redis stops in the middle of the traffic, and comes back with its data.
            redis.close()
            await asyncio.sleep(1.0)
            status, health = await service.health()
            assert (status, health["redis"][:4], health["database"]) == (503, "down", "ok")
            await asyncio.sleep(2.0)
            redis.enter_context(redis_server(redis_folder, persistent=True))
            await service.healthy(STARTUP_SECONDS)
            redis_back = time.monotonic()
            await _answered_since(answers, redis_back)

            # 3. PostgreSQL stops, and comes back.
            outage = time.monotonic()
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(1.0)
            status, health = await service.health()
            assert (status, health["database"][:4], health["redis"]) == (503, "down", "ok")
            # A shop system is told to come back, and nothing is half-recorded.
            status, body = await _api(
                service.url, "POST", "/orders", _order("X-1", MEMBERS[0], 100)
            )
            assert (status, body["error"]["code"]) == (503, "unavailable")
            await asyncio.sleep(2.0)
            await asyncio.to_thread(pg.start)
            await service.healthy(STARTUP_SECONDS)
            recovered = time.monotonic()

            # Afterwards the service works as before: ¥3,000 more makes each member gold. One
            # answer comes after the worker stopped waiting (WeChat did send it): not resent.
            standin.fail_next(TEMPLATE, Fault(delay=2.0))
            for n, openid in enumerate(MEMBERS):
                async with asyncio.timeout(STARTUP_SECONDS):
                    while True:
                        status, body = await _api(
                            service.url, "POST", "/orders", _order(f"G-{n}", openid, 300_000)
                        )
                        if status != 503:  # the pool's stale connections are replaced
                            break
                        await asyncio.sleep(0.2)
                assert status == 201, body
            rows = await _settled(pg.url, 2 * len(MEMBERS))
            outcomes = Counter((r.status, r.reason) for r in rows)
            assert outcomes == {("sent", None): 39, ("failed", "unanswered"): 1}
            sent_to = Counter(body["touser"] for body in standin.sent(TEMPLATE))
            assert sent_to == dict.fromkeys(MEMBERS, 2)
            await asyncio.sleep(1.0)

        late = [a for a in answers if a.seconds >= WITHIN or a.status != 200]
        assert late == [], late[:5]
        busy = [a for a in answers if a.text == copy.BUSY]
        replied = [a for a in answers if _replied(a)]
        # Told to wait while a store was away; answered before, between and after the outages.
        assert busy
        assert any(a.at > recovered for a in replied)
        assert any(redis_back < a.at < outage for a in replied)
        print(
            f"faults: {len(answers)} messages answered, slowest "
            f"{max(a.seconds for a in answers):.2f} s, {len(busy)} busy, "
            f"{len(replied)} replies; 40 pushes, 0 lost, 0 twice"
        )
    except BaseException:
        print(service.log_tail())
        raise
    finally:
        redis.close()


async def test_a_failing_test_leaves_no_process_behind(tmp_path: Path) -> None:
    # The embedded defaults: the service starts a Redis server that daemonizes, leaving the
    # service's process group; found in its data folder all the same.
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'[server]\nport = {port}\n[database]\nurl = "sqlite:///{data}/bot.db"\n'
        f'[redis]\nurl = ""\nembedded_path = "{data}/redis.db"\n'
        f'[api]\ntoken = "{API_TOKEN}"\n[scheduler]\nenabled = false\n',
        encoding="utf-8",
    )
    code, _, err = await run_bot(config, "migrate")
    assert code == 0, err

    def left() -> list[str]:
        """What still runs of the test's: by command line (pgrep), or in its data folder."""
        found = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, check=False)
        return found.stdout.decode().split() + [str(pid) for pid in marked("-", data)]

    # A test fails while the service runs, and the service is hung: SIGTERM does nothing.
    marks: list[str] = []

    async def fail_while_hung() -> None:
        async with Service(tmp_path, config, port, data, grace=1.0) as service:
            assert service.process is not None
            marks.append(service.process.mark)  # type: ignore[attr-defined]
            assert len(marked(marks[0], data)) >= 2  # the service and its Redis server
            os.kill(service.process.pid, signal.SIGSTOP)
            raise RuntimeError("a forced failure")

    with pytest.raises(RuntimeError, match="a forced failure"):
        await fail_while_hung()
    assert marked(marks[0], data) == []
    assert left() == []

    # A start-up that never becomes healthy (its Redis is nowhere) is stopped too.
    config.write_text(
        config.read_text().replace('url = ""', f'url = "unix://{tmp_path}/none.sock"'),
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="the service"):
        await Service(tmp_path, config, port, data, startup=3.0).__aenter__()
    assert left() == []
