"""What marketing pushes must respect, kept in Redis so every worker shares it: quiet hours,
per-member frequency caps, WeChat's monthly mass-send allowance, and the mass-send batches.

Service notifications (points, tier, birthday gift, service replies) are exempt from all of it.
"""

from __future__ import annotations

import hashlib
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

# KEYS: counters; ARGV: the limit and the TTL of each. Takes one of each when all are under
# their limits (1), else takes nothing (0).
_TAKE_ALL = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[2 * i])
end
return 1
"""
MASS_QUEUES = "mass:queues"
# A lone openid waits this long for company: WeChat's mass send needs at least two.
MASS_LONE_WAIT_SECONDS = 10.0


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


class MarketingLimits:
    """Quiet hours, frequency caps and the mass-send allowance for one programme zone."""

    def __init__(
        self,
        redis: Redis,
        zone: ZoneInfo,
        *,
        quiet_start: str,
        quiet_end: str,
        per_day: int,
        per_week: int,
        mass_per_month: int,
    ) -> None:
        self._take = redis.register_script(_TAKE_ALL)
        self.zone = zone
        self.quiet_start, self.quiet_end = _clock(quiet_start), _clock(quiet_end)
        self.per_day, self.per_week, self.mass_per_month = per_day, per_week, mass_per_month

    def quiet_until(self, now: datetime) -> datetime | None:
        """When the quiet hours around ``now`` end (UTC), or None outside them."""
        local = now.astimezone(self.zone)
        start, end, clock_now = self.quiet_start, self.quiet_end, local.time()
        if start == end:
            return None
        inside = (
            (start <= clock_now or clock_now < end) if start > end else start <= clock_now < end
        )
        if not inside:
            return None
        day = local.date() if clock_now < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, self.zone).astimezone(UTC)

    async def take_marketing(self, member_id: int, now: datetime) -> bool:
        """Count a marketing push against the member's daily and weekly caps (False: capped)."""
        local = now.astimezone(self.zone)
        year, week, _ = local.isocalendar()
        keys = [f"cap:day:{member_id}:{local:%Y%m%d}", f"cap:week:{member_id}:{year}W{week:02d}"]
        args = [self.per_day, 2 * 86_400, self.per_week, 8 * 86_400]
        return bool(await self._take(keys=keys, args=args))

    async def take_mass(self, member_id: int, now: datetime) -> bool:
        """Spend one of the member's mass sends this month (False: none left)."""
        local = now.astimezone(self.zone)
        keys = [f"mass:month:{member_id}:{local:%Y%m}"]
        return bool(await self._take(keys=keys, args=[self.mass_per_month, 32 * 86_400]))


@dataclass(frozen=True, slots=True)
class MassBatch:
    """Deliveries that go out together in one mass send of ``text``."""

    key: str
    text: str
    delivery_ids: list[int]
    openids: list[str]


class MassQueue:
    """Marketing deliveries waiting to go out by mass send, grouped by their text."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, delivery_id: int, openid: str, text: str) -> None:
        """Queue a claimed delivery for the mass send of its text."""
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(f"mass:text:{key}", text, ex=86_400)
            pipe.rpush(f"mass:queue:{key}", f"{delivery_id}:{openid}:{clock.time():.0f}")
            pipe.sadd(MASS_QUEUES, key)
            await pipe.execute()

    async def take(self, size: int) -> list[MassBatch]:
        """Batches ready to send: two or more openids, or a lone one that waited long enough.
        Each entry is popped by exactly one worker."""
        batches = []
        for raw in await self.redis.smembers(MASS_QUEUES):
            key = raw.decode()
            queue = f"mass:queue:{key}"
            first = await self.redis.lindex(queue, 0)
            if first is None:
                await self.redis.srem(MASS_QUEUES, key)
                continue
            waited = clock.time() - float(first.decode().rsplit(":", 1)[1])
            if await self.redis.llen(queue) < 2 and waited < MASS_LONE_WAIT_SECONDS:
                continue
            items = await self.redis.lpop(queue, size) or []
            text = await self.redis.get(f"mass:text:{key}")
            ids, openids = [], []
            for item in items:
                delivery_id, openid, _ = item.decode().split(":", 2)
                ids.append(int(delivery_id))
                openids.append(openid)
            if ids:
                batches.append(MassBatch(key, (text or b"").decode(), ids, openids))
        return batches
