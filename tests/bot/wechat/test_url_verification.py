"""URL verification against the official worked example (WECHAT.md §1.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def test_official_example_signature(app_factory: Callable[..., Any]) -> None:
    # The documented example is from 2024 and uses Token=AAAAA.
    client = await app_factory(token="AAAAA", timestamp_tolerance_seconds=10**10)
    params = {
        "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
        "timestamp": "1714036504",
        "nonce": "1514711492",
        "echostr": "4375120948345356249",
    }
    response = await client.get("/wechat", params=params)
    assert (response.status, await response.text()) == (200, "4375120948345356249")
