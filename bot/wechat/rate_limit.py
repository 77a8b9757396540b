"""Token buckets in Redis, shared by every process: one per WeChat API, one per API token."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst, now (s), n. Takes n tokens if they are
# there; returns 0 when taken, else the seconds until they will be.
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[4]) or 1
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= n then tokens = tokens - n else wait = (n - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class RateLimiter:
    """``await limiter.take("template")`` returns once the API's shared bucket gives a token."""

    def __init__(self, redis: Redis, rates: dict[str, float]) -> None:
        self._redis = redis
        self._rates = rates
        self._take = redis.register_script(_TAKE)

    async def take(self, api: str, n: int = 1) -> None:
        """Wait for ``n`` tokens of ``api``'s bucket (unlimited for an API without a rate);
        more than a second's worth are taken a second's worth at a time."""
        rate = self._rates.get(api)
        if not rate:
            return
        burst = max(1.0, rate)  # a second's worth
        while n > 0:
            part = min(n, int(burst))
            wait = await self.try_take(api, rate, burst, part)
            if wait <= 0:
                n -= part
            else:
                await asyncio.sleep(wait)

    async def try_take(self, bucket: str, rate: float, burst: float, n: int = 1) -> float:
        """Take ``n`` tokens from ``bucket`` (refilled at ``rate`` a second, holding up to
        ``burst``) if it has them: 0.0; else nothing is taken and the seconds until it will."""
        keys = [f"ratelimit:{bucket}"]
        return float(await self._take(keys=keys, args=[rate, burst, time.time(), n]))
