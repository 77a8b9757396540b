"""Events for shop systems: member events fanned out to subscribers and POSTed to their URLs,
signed, on the same outbox machinery as pushes (bot/push/outbox.py).

The fan-out writes the delivery rows in the transaction that marks the events fanned out; the
ids go on the stream ``hooks`` after it commits. A worker claims a batch (``queued`` →
``sending``), POSTs each body with these headers, and records the outcomes together:

- ``X-Loyalty-Event``: the event type (``points.changed`` …);
- ``X-Loyalty-Delivery``: the idempotency key, the same on every retry and replay;
- ``X-Loyalty-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Loyalty-Signature``: ``v1=`` and the hex HMAC-SHA256, under the subscriber's secret, of
  ``"<timestamp>.<body>"``. A receiver recomputes it over the raw body, compares in constant
  time, and refuses timestamps more than five minutes away (a replayed capture); the README
  shows how.

A 2xx answer delivers. Anything else (another status, a timeout, a refused connection) is
tried again with exponential backoff and jitter until the row's ``retry_until`` (a day), then
it is failed; the console and the API can replay it. A worker that dies mid-send leaves its
rows to be sent again by another: the receiver dedupes by the idempotency key. What went wrong
is recorded as a short category (``HTTP 503``, ``timeout``, ``connect_error`` …), never the
exception's text, which the API and the console show to their callers.

Subscribers are registered by API callers, so a URL could aim the workers at this network
(``http://127.0.0.1:6379``, a cloud metadata address). Unless ``[hooks]
allow_private_targets``, loopback, link-local, private and other non-public addresses are
refused when a URL is registered (``target_problem``) and again for every connection the
workers open (``hooks_http``'s socket factory sees each address actually connected to), so a
name that resolves elsewhere later, or an IP literal stored before, reaches nothing either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox, StreamConsumer, retry_delay
from bot.push.settings import HooksConfig
from bot.tasks import every
from models.base import utcnow
from models.hooks import (
    ClaimedHook,
    HookOutcome,
    claim,
    fan_out,
    record,
    requeue_interrupted,
    stuck,
)

log = logging.getLogger(__name__)

STREAM = "hooks"
DELAYED = "hooks:delayed"
GROUP = "hook-senders"
SWEEP_AFTER = timedelta(minutes=10)
SIGNATURE_VERSION = "v1"
USER_AGENT = "loyalty-hooks/1"


RESOLVE_SECONDS = 5.0


class RefusedAddress(OSError):
    """A connection to an address subscribers may not reach."""


def public_address(address: str) -> bool:
    """Whether an IP address is one on the public internet (not loopback, link-local,
    private, shared, reserved or multicast; an IPv4 address mapped into IPv6 counts as
    itself)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is not the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _public_socket(addr_info: tuple[int, int, int, str, tuple[Any, ...]]) -> socket.socket:
    """The socket for one address a worker is about to connect to, if that address is public.
    The check is on the address connected to, after resolution: nothing resolved earlier
    (at registration, or by another lookup) can be swapped in."""
    family, type_, proto, _, sockaddr = addr_info
    if not public_address(str(sockaddr[0])):
        # One message for every refusal: aiohappyeyeballs keeps the type only when all the
        # errors of a host's addresses read the same.
        raise RefusedAddress("address not allowed for shop events")
    return socket.socket(family=family, type=type_, proto=proto)


def hooks_http(config: HooksConfig) -> aiohttp.ClientSession:
    """The HTTP session the workers POST with: its own connection pool, and unless
    ``allow_private_targets`` only public addresses are connected to."""
    guard = None if config.allow_private_targets else _public_socket
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=guard))


async def target_problem(url: str, allow_private: bool) -> str | None:
    """Why a subscriber's URL is refused (its host resolves to no public address, or does
    not resolve), or None. The workers check again at every connection."""
    parts = urlsplit(url)
    if allow_private or parts.hostname is None:
        return None
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            found = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, UnicodeError):
        return "its host does not resolve to an address"
    if not found or not all(public_address(str(info[4][0])) for info in found):
        return "must reach a public address, not a loopback, link-local or private one"
    return None


def failure_category(exc: BaseException) -> str:
    """What went wrong with an attempt, as the short category stored and shown (the
    exception's own text can carry addresses and the receiver's answers)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, RefusedAddress):
            return "refused_address"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return "dns_error"
        if isinstance(exc, aiohttp.ClientSSLError):
            return "tls_error"
        return "connect_error"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "connection_lost"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_url"
    return "http_error"


def hooks_outbox(redis: Redis) -> Outbox:
    """The outbox of the hooks stream."""
    return Outbox(redis, STREAM, DELAYED)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Loyalty-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


async def fan_out_all(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, config: HooksConfig
) -> int:
    """Fan out every event not yet fanned out, a thousand per transaction; the deliveries
    planned."""
    planned = 0
    while True:
        now = utcnow()
        async with sessions.begin() as session:
            taken, ids = await fan_out(session, now, timedelta(hours=config.retry_hours))
        await outbox.enqueue(ids)
        planned += len(ids)
        if not taken:
            return planned


async def fan_out_forever(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    config: HooksConfig,
    stop: asyncio.Event,
    interval: float = 1.0,
) -> None:
    """Fan out new events every ``interval`` seconds until ``stop`` is set."""

    async def run() -> None:
        await fan_out_all(sessions, outbox, config)

    await every(interval, stop, run, "fanning out shop events")


class HookWorker(StreamConsumer):
    """One consumer of the hooks stream (see the module's docstring)."""

    def __init__(
        self,
        *,
        name: str,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        http: aiohttp.ClientSession,
        config: HooksConfig,
    ) -> None:
        super().__init__(
            name=name,
            redis=redis,
            outbox=hooks_outbox(redis),
            group=GROUP,
            concurrency=config.concurrency,
            reclaim_idle_seconds=config.reclaim_idle_seconds,
        )
        self.sessions = sessions
        self.http = http
        self.config = config

    async def deliver_many(
        self,
        delivery_ids: Sequence[int],
        now: datetime | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> dict[int, str]:
        """POST those of these rows that are due and unclaimed, concurrently; their outcomes
        are recorded in one statement. What happened to each."""
        now = now or utcnow()
        async with self.sessions.begin() as session:
            claimed = await claim(session, delivery_ids, now)
        results = dict.fromkeys(delivery_ids, "not_claimed")
        if on_done is not None:
            for _ in range(len(delivery_ids) - len(claimed)):
                on_done()

        async def attempt(hook: ClaimedHook) -> HookOutcome:
            try:
                return await self._post(hook)
            finally:
                if on_done is not None:
                    on_done()

        outcomes = await asyncio.gather(*(attempt(hook) for hook in claimed))
        async with self.sessions.begin() as session:
            await record(session, outcomes, utcnow())
        await self.outbox.delay(
            {o.delivery_id: o.not_before for o in outcomes if o.not_before is not None}
        )
        for outcome, hook in zip(outcomes, claimed, strict=True):
            results[hook.id] = outcome.status
            log.info(
                "shop event",
                extra={
                    "hook_delivery": hook.id,
                    "type": hook.type,
                    "status": outcome.status,
                    "attempt": hook.attempts,
                    "http_status": outcome.response_status,
                    **({"error": outcome.error} if outcome.error else {}),
                },
            )
        return results

    async def _post(self, hook: ClaimedHook) -> HookOutcome:
        body = hook.body.encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Loyalty-Event": hook.type,
            "X-Loyalty-Delivery": hook.idempotency_key,
            "X-Loyalty-Timestamp": str(stamp),
            "X-Loyalty-Signature": sign(hook.secret, stamp, body),
        }
        status: int | None = None
        try:
            async with self.http.post(
                hook.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                allow_redirects=False,
            ) as response:
                status = response.status
            if 200 <= status < 300:
                return HookOutcome(hook.id, "delivered", response_status=status)
            error = f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = failure_category(exc)
            # The detail stays in this log, for operators; callers read the category.
            log.info(
                "shop event attempt failed", extra={"hook_delivery": hook.id, "detail": repr(exc)}
            )
        return self._later(hook, status, error)

    def _later(self, hook: ClaimedHook, status: int | None, error: str) -> HookOutcome:
        at = utcnow() + retry_delay(
            hook.attempts, self.config.retry_base_seconds, self.config.retry_max_seconds
        )
        if at > hook.retry_until:
            return HookOutcome(hook.id, "failed", response_status=status, error=error)
        return HookOutcome(hook.id, "retry", response_status=status, error=error, not_before=at)

    async def reclaimed(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Rows a dead worker left ``sending`` go again: receivers dedupe by idempotency key."""
        async with self.sessions.begin() as session:
            await requeue_interrupted(session, delivery_ids, now)

    async def tidy(self, now: datetime, sweep: bool) -> None:
        """(``sweep``) Put back on the stream rows a lost stream or a dead worker stranded."""
        if not sweep:
            return
        async with self.sessions.begin() as session:
            ids = await stuck(session, now - SWEEP_AFTER, now)
        if ids:
            log.warning("shop events stranded, queued again", extra={"count": len(ids)})
        await self.outbox.enqueue(ids)
