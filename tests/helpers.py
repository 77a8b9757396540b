"""Small helpers shared by the webhook tests."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot import wiring
from bot.outbox import STREAM
from bot.webhook_client import SignedRequest, WebhookClient
from models.members import Member
from tests.conftest import AES_KEY, APPID, TOKEN

PLAIN = WebhookClient(TOKEN, APPID)
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
    """Nothing in Redis but the delivery stream every app's worker creates at startup."""
    return set(await redis.keys()) <= {STREAM.encode()}
