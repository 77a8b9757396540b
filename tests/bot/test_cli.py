"""The command line as a newcomer uses it: chat through the real webhook, embedded Redis."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot import wiring
from bot.app import create_app
from bot.config import RedisConfig
from bot.redis_server import open_redis
from models.members import find_member
from tests.conftest import API_TOKEN, APPID, SECRET, TOKEN, make_config
from tests.services import STARTUP_SECONDS, child_process

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
