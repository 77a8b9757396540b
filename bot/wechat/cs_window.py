"""The customer-service window a member's interaction opens (bot/wechat/gate.py opens it).

WeChat allows a few customer-service messages per interaction (5 within 48 hours of a message,
3 within a minute of a click, follow or scan; WECHAT.md §3.2). Whoever sends one takes a slot
here first, so the service never spends what WeChat would refuse with 45015 or 45047.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.wechat.gate import WINDOW_KEY

# WeChat's verdicts on the window: closed (or the member unfollowed), and spent.
WINDOW_ERRORS = frozenset({45015, 45047})
# Returns 1 and counts the message when the window is open with a slot left, else 0.
_TAKE_SLOT = """
local quota = tonumber(redis.call('HGET', KEYS[1], 'quota') or '0')
if quota == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'sent') or '0') >= quota then return 0 end
redis.call('HINCRBY', KEYS[1], 'sent', 1)
return 1
"""


class CustomerServiceWindows:
    """Slots in members' customer-service windows."""

    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(_TAKE_SLOT)
        self._redis = redis

    async def take_slot(self, openid: str) -> bool:
        """Take one message slot of ``openid``'s open window; False if closed or spent."""
        return bool(await self._take(keys=[WINDOW_KEY.format(openid=openid)]))

    async def state(self, openid: str) -> tuple[int, float | None]:
        """(messages left, seconds until the window closes; None when closed)."""
        key = WINDOW_KEY.format(openid=openid)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(key, "quota", "sent").ttl(key)
            (quota, sent), ttl = await pipe.execute()
        if not quota or ttl is None or ttl <= 0:
            return 0, None
        return max(0, int(quota) - int(sent or 0)), float(ttl)

    async def close(self, openid: str) -> None:
        """WeChat said the window is closed (45015) or spent (45047): believe it."""
        await self._redis.delete(WINDOW_KEY.format(openid=openid))
