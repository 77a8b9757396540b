"""Small helpers shared by the tests: the webhook as WeChat calls it, the CLI as run."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import wiring
from bot.push.outbox import STREAM
from bot.push.shop_hooks import STREAM as HOOK_STREAM
from bot.wechat.webhook_client import SignedRequest, WebhookClient
from models.members import Member
from tests.conftest import AES_KEY, API_TOKEN, APPID, SECRET, TOKEN
from tests.services import STARTUP_SECONDS, child_process

ROOT = Path(__file__).resolve().parent.parent

PLAIN = WebhookClient(TOKEN, APPID)
# The streams an app's workers create, empty, when it starts.
STREAMS = {STREAM, HOOK_STREAM}
SAFE = WebhookClient(TOKEN, APPID, AES_KEY)


@dataclass
class Answer:
    status: int
    body: str
    reply: dict[str, str] | None


async def push(
    client: TestClient, wechat: WebhookClient, xml: str, request: SignedRequest | None = None
) -> Answer:
    """POST ``xml`` to /wechat as WeChat would; decode the reply."""
    request = request or wechat.sign(xml)
    response = await client.post("/wechat", params=request.params, data=request.body)
    body = await response.text()
    reply = wechat.read_reply(body, request) if response.status == 200 else None
    return Answer(response.status, body, reply)


async def member_count(client: TestClient) -> int:
    async with client.app[wiring.SESSIONS]() as session:
        return await session.scalar(select(func.count()).select_from(Member)) or 0


async def get_member(client: TestClient, openid: str) -> Member | None:
    async with client.app[wiring.SESSIONS]() as session:
        return await session.scalar(select(Member).where(Member.openid == openid))


async def redis_untouched(redis: Redis) -> bool:
    """Nothing in Redis but the streams every app's workers create at startup."""
    return {key.decode() for key in await redis.keys()} <= STREAMS


async def run_bot(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run ``python -m bot --config CONFIG ARGS`` (with ``stdin`` as its input); stopped,
    with whatever it started, if it outlives the test's patience or the test."""
    async with child_process(
        *(sys.executable, "-m", "bot", "--config", str(config), *args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        data = stdin.encode() if stdin is not None else None
        out, err = await asyncio.wait_for(process.communicate(data), timeout=STARTUP_SECONDS)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def bot_config(tmp_path: Path, db_url: str, redis_url: str) -> Path:
    """A configuration file for the CLI against the lane's database and the test Redis."""
    path = tmp_path / "bot.toml"
    path.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'[api]\ntoken = "{API_TOKEN}"\n[database]\nurl = "{db_url}"\n'
        f'[redis]\nurl = "{redis_url}"\n',
        encoding="utf-8",
    )
    return path


def http_post(request: SignedRequest, path: str = "/wechat", extra: str = "") -> bytes:
    """``request`` as WeChat's HTTP/1.1 POST."""
    head = (
        f"POST {path}?{urlencode(request.params)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: text/xml\r\nContent-Length: {len(request.body)}\r\n{extra}\r\n"
    )
    return head.encode() + request.body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], str]:
    """One HTTP/1.1 response with a Content-Length: status, headers (lower-case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")[:-2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body.decode()


async def exchange(port: int, raw: bytes, answers: int = 1) -> list[tuple[int, dict, str]]:
    """Send ``raw`` on a new connection; the first ``answers`` responses (status, headers,
    body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        return [await read_response(reader) for _ in range(answers)]
    finally:
        writer.close()


async def make_scratch_table(engine: AsyncEngine) -> None:
    """The SQLite engine tests' scratch table ``t`` (``id``, ``who``)."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))


async def add_who(engine: AsyncEngine, who: str) -> None:
    """One row in the scratch table, committed."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})


async def whos(engine: AsyncEngine) -> list[str]:
    """The ``who`` column of the scratch table, in order."""
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT who FROM t ORDER BY id"))).scalars())
