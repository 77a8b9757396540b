"""The embedded defaults (SQLite and the embedded Redis in one data directory) when the disk
fills up under a running service, and when a command starts on a read-only data directory:
clear errors, answers within WeChat's 5 s, recovery by itself, no corruption. (A file system
cannot be remounted read-only while the service holds files open for writing, so the read-only
case is tested at start.)

The data directory is a small tmpfs mounted for the test, so this needs the right to mount (as
on the CI machine); elsewhere the tests are skipped and say why."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from messages import copy
from tests.bot.test_faults import Service
from tests.conftest import API_TOKEN, APPID, SECRET, TOKEN
from tests.helpers import PLAIN, ROOT, run_bot
from tests.services import STARTUP_SECONDS, free_port

WITHIN = 5.0


def _mount(where: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", *options, "-t", "tmpfs", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB file system of its own for the data directory."""
    where = tmp_path / "data"
    where.mkdir()
    mounted = _mount(where, "-o", "size=8m")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _config(folder: Path, data: Path, port: int) -> Path:
    config = folder / "bot.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        'api_base_url = "http://127.0.0.1:9"\n'
        f'[server]\nport = {port}\n[database]\nurl = "sqlite:///{data}/bot.db"\n'
        f'[redis]\nurl = ""\nembedded_path = "{data}/redis.db"\n[api]\ntoken = "{API_TOKEN}"\n'
        "[scheduler]\nenabled = false\n",
        encoding="utf-8",
    )
    return config


async def _say(url: str, openid: str, xml: str) -> tuple[float, int, str]:
    request = PLAIN.sign(xml)
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/wechat",
            params=request.params,
            data=request.body,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response,
    ):
        body = await response.text()
        reply = PLAIN.read_reply(body, request) if response.status == 200 else None
        return time.monotonic() - started, response.status, reply["Content"] if reply else body


def _fill(data: Path) -> Path:
    """Write a file until the disk is full."""
    filler = data / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


async def _round(url: str, tag: str) -> list[tuple[float, int, str]]:
    """A new follower and three members asking 积分."""
    answers = [await _say(url, f"o_disk_{tag}", PLAIN.event(f"o_disk_{tag}", "subscribe"))]
    for n in range(3):
        answers.append(await _say(url, f"o_disk_m{n}", PLAIN.text(f"o_disk_m{n}", "积分")))
    return answers


async def test_a_full_disk_slows_nobody_and_heals(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, data_dir, port)
    code, _, err = await run_bot(config, "migrate")
    assert code == 0, err
    service = Service(tmp_path, config, port, data_dir)
    try:
        async with service:
            before = await _round(service.url, "a")
            assert all(text not in (copy.BUSY, "success") for _, _, text in before)

            filler = _fill(data_dir)
            full = await _round(service.url, "b")
            full += await _round(service.url, "c")
            full_health = await service.health()
            filler.unlink()
            # Redis retries its append-only file once a second.
            await service.healthy(STARTUP_SECONDS)
            status, health = await service.health()
            after_full = await _round(service.url, "d")
    except BaseException:
        print(service.log_tail())
        raise

    # Every answer in time, never a server error; refused work said so briefly.
    for seconds, code, text in full:
        assert seconds < WITHIN
        assert code == 200, text
    assert any(text == copy.BUSY for _, _, text in full)
    # /healthz says what is wrong: Redis refuses writes it cannot persist.
    assert full_health[0] == 503
    assert full_health[1]["redis"] == "down: MISCONF", full_health
    # Space back, writes back: healed without a restart.
    assert status == 200, health
    for _, code, text in after_full:
        assert (code, text == copy.BUSY) == (200, False), text
    with sqlite3.connect(data_dir / "bot.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        followers = {row[0] for row in db.execute("SELECT openid FROM members")}
    assert {"o_disk_a", "o_disk_d"} <= followers
    code, out, err = await run_bot(config, "ledger", "verify")
    assert code == 0, out + err


def test_a_read_only_data_directory_stops_a_command_with_one_line(
    data_dir: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, data_dir / "new", free_port())
    subprocess.run(["mount", "-o", "remount,ro", str(data_dir)], check=True)
    for command in (["migrate"], ["serve"]):
        process = subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(config), *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert process.returncode == 2
        assert process.stderr.strip().splitlines() == [
            f"storage error: Read-only file system ({data_dir / 'new'})"
        ]
