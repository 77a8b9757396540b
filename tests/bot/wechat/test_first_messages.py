"""First messages from members we have never seen, arriving together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.bot.wechat.test_webhook import HeldCapability
from tests.helpers import PLAIN, get_member, push


async def test_a_first_message_holds_no_write_lock_while_its_handler_runs(
    app_factory: Callable[..., Any],
) -> None:
    # The member row was written in the message's unit of work and committed after the
    # handler: on SQLite that held the database's one write lock through the handler, so every
    # other first message waited behind it (the mixed load's one-second answers).
    capability = HeldCapability()
    client = await app_factory(router=capability.root)
    entered = asyncio.Event()
    capability.on_enter = entered.set
    capability.release.clear()
    first = asyncio.create_task(push(client, PLAIN, PLAIN.text("o_first_lock_001", "你好", 1)))
    try:
        await entered.wait()  # the first member's handler is running, and held
        # Another newcomer's menu click: no text, so not held; its member row must be written
        # now, not after the held handler's transaction (SQLite's busy timeout is 5 s).
        click = PLAIN.event("o_first_lock_002", "CLICK", "NO_SUCH_KEY")
        await asyncio.wait_for(push(client, PLAIN, click), timeout=3)
        assert await get_member(client, "o_first_lock_002") is not None
        assert await get_member(client, "o_first_lock_001") is not None
    finally:
        capability.release.set()
        await first
