"""Members' points summaries cached in Redis, so 积分 costs one Redis round trip, not SQL.

积分 is the most asked question and its answer changes only when the ledger moves. Measured
on the 1,000,000-member PostgreSQL bench, the three indexed queries behind it cost about 1 ms
of the web process's CPU (pool checkout and SQLAlchemy, not PostgreSQL), capping one process
at about 470 answers a second; from the cache it answers at the webhook's own speed.

Correctness rests on three rules:

- Every transaction that moves points notes the members in ``session.info`` (models/ledger.py);
  after it commits, ``forget`` bumps those members' generation counters and drops their
  summaries. Work over very many members (the nightly expiry, an import batch) bumps one
  programme-wide epoch instead, which invalidates every summary at once.
- A reader stores what it computed only if neither the member's generation nor the epoch moved
  since it looked (one Lua script), so a read that raced a commit cannot put old figures back.
- A summary lives at most an hour and never past the next local midnight, when lots expire and
  the 30-day expiry horizon moves.

What remains is the instant between a commit and its invalidation reaching Redis (the
invalidation is sent as soon as the commit returns), as in any cache-aside design.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.wechat.redis_pipe import LuaScript, RedisPipe
from models.ledger import EXPIRING_HORIZON, PointsSummary, points_summary

log = logging.getLogger(__name__)
Reading = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

EPOCH_KEY = "points:epoch"
# A member's summary and generation are these prefixes and the member id (the gate's script,
# bot/wechat/gate.py, builds them from the id it finds).
SUMMARY_PREFIX = "points:summary:"
GENERATION_PREFIX = "points:gen:"
MAX_TTL = 3600
# A member's generation must outlive any summary read under it (see ``_STORE``).
GENERATION_TTL = 2 * MAX_TTL
# Beyond this many members in one commit, one epoch bump is cheaper than per-member keys.
BULK = 500

# KEYS: summary, generation, epoch. ARGV: generation and epoch seen before reading, value, ttl.
_STORE = LuaScript(
    """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return 1
"""
)
# ARGV: member ids. Bumps each generation and drops each summary. Sent as EVAL, not EVALSHA:
# a NOSCRIPT retry would let a lookup sent after it overtake the invalidation.
_FORGET = (
    """
for _, id in ipairs(ARGV) do
  redis.call('INCR', 'points:gen:' .. id)
  redis.call('EXPIRE', 'points:gen:' .. id, """
    + str(GENERATION_TTL)
    + """)
  redis.call('DEL', 'points:summary:' .. id)
end
return #ARGV
"""
)


def _summary_key(member_id: int) -> str:
    return f"{SUMMARY_PREFIX}{member_id}"


def _generation_key(member_id: int) -> str:
    return f"{GENERATION_PREFIX}{member_id}"


@dataclass(frozen=True, slots=True)
class Lookup:
    """A cache lookup of one member: the summary as cached (``raw``), and the stamps a later
    ``store`` must match."""

    member_id: int
    raw: bytes | None
    generation: str
    epoch: str

    @property
    def summary(self) -> PointsSummary | None:
        """The cached summary, if any (read when asked: the gate looks up every message's
        member, and most messages do not ask for points)."""
        return _decode(self.raw, self.epoch) if self.raw else None


def _text(value: bytes | None) -> str:
    return value.decode() if value else ""


def looked_up(
    member_id: int, raw: bytes | None, generation: bytes | None, epoch: bytes | None
) -> Lookup:
    """The lookup of the member's three values (summary, generation, epoch), read as one."""
    return Lookup(member_id, raw, _text(generation), _text(epoch))


def _encode(summary: PointsSummary, epoch: str) -> str:
    return json.dumps(
        [
            epoch,
            summary.balance,
            summary.bound,
            [[at.timestamp(), points] for at, points in summary.expiring],
            [[at.timestamp(), kind, reason, points] for at, kind, reason, points in summary.recent],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _decode(raw: bytes, current_epoch: str) -> PointsSummary | None:
    epoch, balance, bound, expiring, recent = json.loads(raw)
    if epoch != current_epoch:
        return None  # cached before a programme-wide change
    return PointsSummary(
        balance=balance,
        bound=bound,
        expiring=[(datetime.fromtimestamp(at, UTC), points) for at, points in expiring],
        recent=[
            (datetime.fromtimestamp(at, UTC), kind, reason, points)
            for at, kind, reason, points in recent
        ],
    )


class PointsCache:
    """Cache-aside points summaries; see the module's docstring for the rules."""

    def __init__(self, pipe: RedisPipe, zone: ZoneInfo) -> None:
        self.pipe = pipe
        self.zone = zone
        self._pending: set[asyncio.Task[None]] = set()

    async def summary(
        self,
        member_id: int,
        now: datetime,
        reading: Reading,
        *,
        in_transaction: bool = False,
        seen: object = None,
    ) -> PointsSummary | None:
        """The member's points summary, from the cache or else read through ``reading`` and
        cached. ``in_transaction``: ``reading`` gives the caller's open unit of work, whose
        uncommitted view must neither be cached nor be answered from the cache. ``seen``: this
        member's ``Lookup`` made earlier in the same message (with the gate's round trip), used
        instead of a lookup of its own."""
        if in_transaction:
            async with reading() as connection:
                return await points_summary(connection, member_id, now, now + EXPIRING_HORIZON)
        if not (isinstance(seen, Lookup) and seen.member_id == member_id):
            seen = await self.lookup(member_id)
        cached = seen.summary
        if cached is not None:
            # Lots expire at local midnights, which no summary outlives; this is belt and braces
            # (and no copy when nothing expired, as is always the case).
            if all(at > now for at, _ in cached.expiring):
                return cached
            return replace(cached, expiring=[(at, p) for at, p in cached.expiring if at > now])
        async with reading() as connection:
            summary = await points_summary(connection, member_id, now, now + EXPIRING_HORIZON)
        if summary is not None:
            await self.store(member_id, summary, seen, now)
        return summary

    async def lookup(self, member_id: int) -> Lookup:
        """The cached summary, or the stamps to store a freshly read one under."""
        raw, generation, epoch = await self.pipe.execute(
            "MGET", _summary_key(member_id), _generation_key(member_id), EPOCH_KEY
        )
        return looked_up(member_id, raw, generation, epoch)

    async def store(
        self, member_id: int, summary: PointsSummary, seen: Lookup, now: datetime
    ) -> bool:
        """Cache ``summary`` unless the member's points moved since ``seen`` was looked up."""
        local = now.astimezone(self.zone)
        tomorrow = local.date() + timedelta(days=1)
        midnight = datetime.combine(tomorrow, datetime.min.time(), self.zone)
        ttl = max(1, min(MAX_TTL, int((midnight - local).total_seconds())))
        stored = await self.pipe.run_script(
            _STORE,
            [_summary_key(member_id), _generation_key(member_id), EPOCH_KEY],
            [seen.generation, seen.epoch, _encode(summary, seen.epoch), ttl],
        )
        return bool(stored)

    async def forget(self, member_ids: Iterable[int]) -> None:
        """Invalidate these members' summaries (all of them, past ``BULK`` members)."""
        ids = list(member_ids)
        if len(ids) > BULK:
            await self.pipe.execute("INCR", EPOCH_KEY)
        elif ids:
            await self.pipe.execute("EVAL", _FORGET, 0, *ids)

    def forget_soon(self, member_ids: set[int]) -> None:
        """``forget`` from synchronous code (a session's after-commit hook), awaited by
        ``drain``. The task's first step writes the command, before this process reads any
        later request, so a lookup after the commit always finds the summary gone."""
        task = asyncio.get_running_loop().create_task(self._forget_logged(member_ids))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _forget_logged(self, member_ids: set[int]) -> None:
        try:
            await self.forget(member_ids)
        except Exception:
            # The summaries then live out their TTL (at most an hour, never past midnight).
            log.exception("points cache invalidation failed", extra={"members": len(member_ids)})

    async def drain(self) -> None:
        """Wait for the invalidations still in flight (before a process exits)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
