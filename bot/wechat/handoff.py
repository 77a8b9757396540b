"""The Redis side of handing members to people: who is with a person, and the console's feed.

``handoff:<openid>`` holds the member's open conversation id while a person has (or is about to
have) the conversation; the webhook's gate reads it with the message's other Redis work, so the
bot knows to stay silent at no extra cost. Everything the console shows live goes through one
pub/sub channel, ``console:events``: each console page's event stream subscribes to it.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

HANDOFF_KEY = "handoff:{openid}"
EVENTS = "console:events"
# A safety net: a conversation ends long before this (idle_minutes), and the key goes with it.
HANDOFF_TTL = 7 * 24 * 3600


class Handoffs:
    """Mark members as with a person, and tell the console what happened."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def begin(self, openid: str, conversation_id: int) -> None:
        """From now on the member's messages go to the conversation, not the bot."""
        await self._redis.set(HANDOFF_KEY.format(openid=openid), conversation_id, ex=HANDOFF_TTL)

    async def finish(self, openid: str) -> None:
        """The bot answers the member again."""
        await self._redis.delete(HANDOFF_KEY.format(openid=openid))

    async def publish(self, event: str, conversation_id: int, **fields: Any) -> None:
        """Tell every open console page (``event``: queued, message, assigned, ended…)."""
        payload = {"event": event, "conversation": conversation_id, **fields}
        await self._redis.publish(EVENTS, json.dumps(payload, ensure_ascii=False, default=str))
