"""Redis Sentinel, the high-availability deployment the service supports: a master, a replica
and a sentinel on 127.0.0.1; the service finds the master through the sentinel, and after the
master dies it follows the sentinel to the promoted replica by itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.app import create_app
from bot.config import RedisConfig
from tests.conftest import make_config
from tests.helpers import PLAIN, push
from tests.services import STARTUP_SECONDS, free_port, redis_server_binary, stop_popen

SERVICE = "loyalty"


@dataclass
class Group:
    master: int
    replica: int
    sentinel: int
    processes: dict[int, subprocess.Popen[bytes]]

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait()


def _redis(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(folder), *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


@contextmanager
def sentinel_group() -> Iterator[Group]:
    folder = Path(tempfile.mkdtemp(prefix="bot-sentinel-"))
    master, replica, sentinel = free_port(), free_port(), free_port()
    conf = folder / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
        # Long enough that a busy machine stalling the master for a moment does not start a
        # failover (quorum 1) before the test kills it; short enough to follow the kill soon.
        f"sentinel down-after-milliseconds {SERVICE} 2000\n"
        f"sentinel failover-timeout {SERVICE} 3000\n",
        encoding="utf-8",
    )
    (folder / "master").mkdir()
    (folder / "replica").mkdir()
    processes = {
        master: _redis(folder / "master", master),
        replica: _redis(folder / "replica", replica, "--replicaof", "127.0.0.1", str(master)),
        sentinel: subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        ),
    }
    try:
        yield Group(master, replica, sentinel, processes)
    finally:
        for process in processes.values():
            stop_popen(process)
        shutil.rmtree(folder, ignore_errors=True)


async def _role(port: int) -> str | None:
    client = Redis(host="127.0.0.1", port=port)
    try:
        info = await client.info("replication")
        return str(info["role"]) + ("" if info.get("master_link_status") != "down" else ":down")
    except RedisError:
        return None
    finally:
        await client.aclose()


async def _ready(group: Group) -> None:
    """The replica in sync and the sentinel watching both."""
    async with asyncio.timeout(STARTUP_SECONDS):
        while True:
            sentinel = Redis(host="127.0.0.1", port=group.sentinel)
            try:
                replicas = await sentinel.sentinel_slaves(SERVICE)
            except RedisError:
                replicas = []
            finally:
                await sentinel.aclose()
            if await _role(group.replica) == "slave" and replicas:
                return
            await asyncio.sleep(0.1)


@pytest.fixture
def group() -> Iterator[Group]:
    with sentinel_group() as running:
        yield running


async def _client(aiohttp_client: Callable[..., Any], db_url: str, group: Group) -> TestClient:
    config = make_config(db_url, "")
    redis = RedisConfig(sentinels=[f"127.0.0.1:{group.sentinel}"], sentinel_service=SERVICE)
    return await aiohttp_client(create_app(config.model_copy(update={"redis": redis})))


async def _answered(client: TestClient, openid: str) -> None:
    """Push 积分 as ``openid`` until the webhook answers it in its reply and /healthz is ok.
    A busy machine may push the first answer past the reply budget (sent later instead), and
    until a failover completes the webhook may answer "busy"."""
    async with asyncio.timeout(STARTUP_SECONDS):
        n = 0
        while True:
            n += 1
            answer = await push(client, PLAIN, PLAIN.text(openid, "积分", msg_id=n))
            health = await client.get("/healthz")
            answered = answer.reply is not None and "积分" in answer.reply["Content"]
            if answered and health.status == 200:
                return
            await asyncio.sleep(0.2)


async def test_the_service_finds_the_master_and_follows_a_failover(
    group: Group, aiohttp_client: Callable[..., Any], db_url: str
) -> None:
    # ``group`` first: fixtures stop in reverse order, so the app stops while Redis still runs.
    await _ready(group)
    client = await _client(aiohttp_client, db_url, group)
    await _answered(client, "o_sentinel_0001")
    master = Redis(host="127.0.0.1", port=group.master)
    assert await master.exists("cs:window:o_sentinel_0001")  # the gate wrote to the master
    await master.aclose()

    group.kill(group.master)
    async with asyncio.timeout(STARTUP_SECONDS):
        while await _role(group.replica) != "master":  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.1)
    # The same app writes to the new master without a restart.
    await _answered(client, "o_sentinel_0002")
    # The member's customer-service window was opened on the promoted server.
    promoted = Redis(host="127.0.0.1", port=group.replica)
    assert await promoted.exists("cs:window:o_sentinel_0002")
    await promoted.aclose()
