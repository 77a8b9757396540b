"""A leader lock in Redis: one process at a time holds it, and knows when it stops holding it.

The key holds a random token and expires after ``ttl`` seconds. The holder extends it every
``ttl / 3``; only the holder's token can extend or delete it (compare-and-set in Lua), so a
process that lost the lock can never renew or release someone else's. A holder killed without
releasing leaves the key to expire, and a waiting process takes over as soon as it has.

Leadership is also a local lease: ``is_leader`` is true only until ``ttl`` after the last
successful renewal was *sent*. The key cannot expire in Redis before that moment, and it can
only be taken by another process after it expired, so two processes never both see
``is_leader`` true, even if this one's event loop stalls and its renewal task falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from types import TracebackType

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
# How long stop() waits for its cancelled loop before cancelling it again.
_STOP_RETRY_SECONDS = 0.1

# SET NX, or say how long the current holder's key has left (milliseconds; -1: no expiry).
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return -3
end
return redis.call('pttl', KEYS[1])
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_ACQUIRED = -3


class LeaderLock:
    """Hold ``key`` in Redis as the leader while running; call back when leadership changes.

    ``on_gained`` and ``on_lost`` are plain callables run on the lock's task, so the process
    has acted on a loss before the lock does anything else. If ``on_gained`` raises, the lock
    steps down and releases, so a process that cannot lead leaves the place to one that can.

    Use ``async with LeaderLock(...)`` or ``await start()`` / ``await stop()``.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        ttl: float = 30.0,
        on_gained: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._redis = redis
        self.key = key
        self.ttl = ttl
        self._ttl_ms = max(1, round(ttl * 1000))
        self._interval = ttl / 3
        # Clock-rate drift between this host and Redis, as Redlock allows for it.
        self._drift = ttl * 0.01 + 0.002
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._token: str | None = None
        self._holding = False
        # Lease end, on time.monotonic(): not the loop's clock, which uvloop may cache.
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lock and its lease has not run out."""
        return self._holding and time.monotonic() < self._valid_until

    @property
    def token(self) -> str | None:
        """The token of this lock's latest acquisition (kept after a loss, for diagnostics)."""
        return self._token

    async def start(self) -> None:
        """Start competing for the lock in a background task (returns at once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"leader-lock {self.key}")

    async def stop(self, *, release: bool = True) -> None:
        """Stop competing; stop leading at once. ``release=False`` leaves the key to expire
        as a killed process would (the next leader then waits up to the TTL)."""
        task, self._task = self._task, None
        if task is not None:
            # Cancelled until it has ended: a cancellation that lands inside the Redis client's
            # reply handling can be swallowed there, and the loop then renewed as if nothing had
            # happened, leading on (and stop() waiting for it) for ever. Seen once in CI.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=_STOP_RETRY_SECONDS)
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
        self._step_down("stopped")
        if release:
            await self.release()

    async def __aenter__(self) -> LeaderLock:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def renew(self) -> bool:
        """Extend the key if it still holds this lock's token; True if it did.

        Extends the local lease only while leading: a renewal after a loss does not make this
        process leader again (it has already acted on the loss; it must acquire afresh).
        """
        if self._token is None:
            return False
        sent = time.monotonic()
        try:
            # A reply later than the lease is worthless: by then the key may be someone else's.
            left = self._valid_until - sent if self._holding else self.ttl
            async with asyncio.timeout(max(0.0, left)):
                renewed = await self._renew(keys=[self.key], args=[self._token, self._ttl_ms])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("leader lock renewal failed", extra={"key": self.key, "error": repr(exc)})
            return False
        if renewed != 1:
            return False
        if self._holding:
            self._valid_until = sent + self.ttl - self._drift
        return True

    async def release(self) -> bool:
        """Delete the key if it still holds this lock's token; True if it did."""
        if self._token is None:
            return False
        try:
            async with asyncio.timeout(max(self._interval, 0.5)):
                released = await self._release(keys=[self.key], args=[self._token])
        except (RedisError, OSError, TimeoutError) as exc:
            # The key expires by itself within the TTL.
            log.warning("leader lock release failed", extra={"key": self.key, "error": repr(exc)})
            return False
        return released == 1

    async def _run(self) -> None:
        while True:
            if not self._holding:
                await asyncio.sleep(await self._try_acquire())
                continue
            left = self._valid_until - time.monotonic()
            await asyncio.sleep(max(0.0, min(self._interval, left)))
            if not await self.renew() or not self.is_leader:
                self._step_down("renewal failed")
                # Best effort, so a successor need not wait for the key to expire.
                await self.release()

    async def _try_acquire(self) -> float:
        """Try to take the lock; the seconds to wait before the next attempt."""
        token = secrets.token_hex(16)
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.ttl):
                result = await self._acquire(keys=[self.key], args=[token, self._ttl_ms])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("leader lock acquire failed", extra={"key": self.key, "error": repr(exc)})
            return self._interval
        if result != _ACQUIRED:
            # Wake just after the holder's key would expire, or sooner to notice a release.
            remaining = result / 1000 + 0.005 if result > 0 else 0.0
            return min(self._interval, remaining) if result != -1 else self._interval
        self._token = token
        self._holding = True
        self._valid_until = sent + self.ttl - self._drift
        log.info("leader lock gained", extra={"key": self.key})
        if self._on_gained is not None:
            try:
                self._on_gained()
            except Exception:
                log.exception("leader start-up failed; stepping down", extra={"key": self.key})
                self._step_down("start-up failed")
                await self.release()
                return self._interval
        if not self.is_leader:
            # on_gained outlasted the lease (a blocked loop): whatever it began is not ours now.
            self._step_down("lease ran out during start-up")
            await self.release()
        return 0.0

    def _step_down(self, reason: str) -> None:
        if not self._holding:
            return
        self._holding = False
        level = logging.INFO if reason == "stopped" else logging.WARNING
        log.log(level, "leader lock lost", extra={"key": self.key, "reason": reason})
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                log.exception("leader shut-down failed", extra={"key": self.key})
