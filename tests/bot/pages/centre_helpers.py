"""Shared by the member centre's tests: the app on a known port (its public URL is WeChat's
redirect_uri), the stand-in playing WeChat's web authorisation, and a member to look at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestClient, unused_port

from bot import wiring
from bot.app import create_app
from bot.config import Config, ServerConfig
from bot.pages.settings import MemberCentreConfig
from models.base import utcnow
from models.rewards import RewardSpec, new_item
from tests.bot.api.test_api import call, follower, order
from tests.conftest import make_config
from tests.wechat_standin import WeChatStandIn

# Every member page stays well under this, on a phone's connection.
PAGE_LIMIT_BYTES = 100_000


@dataclass
class Centre:
    client: TestClient
    standin: WeChatStandIn
    config: Config
    url: str  # the app's public URL


async def start_centre(
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    db_url: str,
    redis_url: str,
    standin: WeChatStandIn,
    **member_centre: Any,
) -> Centre:
    """The real app (no delivery workers) on a free port, signing in through the stand-in."""
    port = unused_port()
    base = str(standin.server.make_url("/")).rstrip("/")  # type: ignore[attr-defined]
    config = make_config(db_url, redis_url, base, {"workers": 0}, oauth_base_url=base)
    url = f"http://127.0.0.1:{port}"
    config = config.model_copy(
        update={
            "server": ServerConfig(public_url=url),
            "member_centre": MemberCentreConfig(secret="centre-test-secret", **member_centre),
        }
    )
    server = await aiohttp_server(create_app(config), port=port)
    return Centre(await aiohttp_client(server), standin, config, url)


def local(url: str) -> str:
    """A URL of the app as a path with its query (the test client asks its own server)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def authorize(centre: Centre, openid: str, location: str) -> str:
    """What WeChat's authorize page does in ``openid``'s browser: the callback URL it sends
    the browser to."""
    centre.standin.browser_openid = openid
    async with (
        aiohttp.ClientSession() as http,
        http.get(location, allow_redirects=False) as answer,
    ):
        assert answer.status == 302, await answer.text()
        return answer.headers["Location"]


async def sign_in(centre: Centre, openid: str) -> None:
    """The whole dance: the centre, WeChat's authorize page, the callback, the card."""
    start = await centre.client.get("/m/", allow_redirects=False)
    assert start.status == 302
    callback = await authorize(centre, openid, start.headers["Location"])
    back = await centre.client.get(local(callback), allow_redirects=False)
    assert back.status == 302, await back.text()
    assert back.headers["Location"] == "/m/"


async def member_with_history(client: TestClient, openid: str, name: str, orders: int) -> None:
    """A follower with a name, ``orders`` ¥100 orders (points) and a coupon."""
    await follower(client, openid)
    status, body = await call(client, "PUT", f"/members/{openid}", {"name": name})
    assert status == 200, body
    for n in range(orders):
        status, body = await call(client, "POST", "/orders", order(f"{openid}-{n}", openid))
        assert status == 201, body
    coupon = {
        "openid": openid,
        "kind": "full_300_50",
        "reason": "test",
        "idempotency_key": f"coupon-{openid}",
    }
    status, body = await call(client, "POST", "/coupons", coupon)
    assert status == 201, body


async def add_item(centre: Centre, **fields: Any) -> int:
    """A catalogue item (a gift picked up for 100 points, unless ``fields`` say otherwise)."""
    spec = {"name": "帆布袋", "kind": "gift", "delivery": "pickup", "points_price": 100}
    async with centre.client.app[wiring.SESSIONS].begin() as session:
        row = new_item(RewardSpec.model_validate({**spec, **fields}), utcnow())
        session.add(row)
        await session.flush()
        return row.id
