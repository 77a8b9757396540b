"""The push pipeline: delivery rows (models/deliveries.py) sent by workers over a Redis Stream.

The row is written (and committed) first; only its id travels on the stream ``deliveries``,
read by a consumer group, so any number of worker processes share the work. A delivery due
later waits in a sorted set (``deliveries:delayed``) until it is due. Each worker:

- claims the rows it read together (``queued`` → ``sending``, one statement for the batch) — a
  duplicate stream entry finds its row taken and is dropped, so the stream may carry an id
  twice but WeChat never gets it twice — sends them concurrently, and records their outcomes
  together (one executemany), so the database sees a few statements per batch, not per push;
- picks the channel by WeChat's rules (WECHAT.md §3): a service notification goes as a
  template message when one is configured for its purpose, else as a customer-service message
  while the member's window has a slot (bot/wechat/cs_window.py), else it is skipped
  (``no_channel``).
  Marketing content never goes as a template message: quiet hours defer it, the member's daily
  and weekly caps may skip it (bot/push/marketing.py), then it goes inside the window if one is
  open, else into a mass send (batched by text, one of the member's 4 a month; a send answered
  too late is tried again with its clientmsgid, and WeChat's 45065 then says the first went out,
  so the batch is recorded sent);
  a ``survey`` (a rating question) first passes the quiet hours and caps as marketing does, then
  takes a service notification's channels;
- waits for the API's shared token bucket (bot/wechat/rate_limit.py), calls WeChat, and records the
  outcome. Transient errors (-1, 45009, 45011, HTTP 5xx, no connection; the client has
  already retried briefly) come back later with exponential backoff and jitter, up to
  ``max_attempts``; permanent ones (43004, 40003, 45015, …) are recorded, not retried, and so
  is a send left unanswered (a timeout): WeChat may have delivered it.

A worker that dies leaves its entries pending in the group; another takes them over after
``reclaim_idle_seconds``. Rows still ``queued`` are simply sent; rows left ``sending`` may or
may not have reached WeChat, which offers no idempotency key, so they are recorded as skipped
(``interrupted``) rather than risk a second copy. A sweep puts back on the stream any row due
for ten minutes but still queued (a stream lost with a Redis that kept no AOF).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.marketing import MarketingLimits, MassBatch, MassQueue
from bot.wechat.client import MASS_ALREADY_SENT, WeChatAPIError, WeChatClient
from bot.wechat.cs_window import WINDOW_ERRORS, CustomerServiceWindows
from bot.wechat.rate_limit import RateLimiter
from messages.outbound import image_message, template_message, text_message
from models.base import utcnow
from models.campaign_rewards import grant_of, grants_of_deliveries, issue_rewards
from models.deliveries import (
    MARKETING,
    SURVEY,
    Claimed,
    Outcome,
    abandon_interrupted,
    abandon_stale_sending,
    claim_many,
    defer,
    due_queued,
    finish_many,
    record_outcomes,
    retry_later,
)
from models.rules import ProgrammeRules

if TYPE_CHECKING:
    from bot.push.settings import DeliveryConfig

log = logging.getLogger(__name__)

STREAM = "deliveries"
DELAYED = "deliveries:delayed"
GROUP = "senders"
# Bounds the stream's memory; an entry trimmed unread is found again by the sweep.
STREAM_MAX = 1_000_000
SWEEP_AFTER = timedelta(minutes=10)


class Outbox:
    """Puts committed rows' ids on a stream, or in its delayed set until they are due: the
    pushes' (``deliveries``) by default, or another pipeline's built the same way."""

    def __init__(self, redis: Redis, stream: str = STREAM, delayed: str = DELAYED) -> None:
        self.redis = redis
        self.stream = stream
        self.delayed = delayed

    async def enqueue(self, delivery_ids: Iterable[int], at: datetime | None = None) -> None:
        """Queue these rows for the workers, now or from ``at``."""
        ids = list(delivery_ids)
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            if at is not None and at > utcnow():
                pipe.zadd(self.delayed, dict.fromkeys(map(str, ids), at.timestamp()))
            else:
                for delivery_id in ids:
                    pipe.xadd(self.stream, {"id": delivery_id}, maxlen=STREAM_MAX, approximate=True)
            await pipe.execute()

    async def delay(self, due: dict[int, datetime]) -> None:
        """Queue each row from its own time (one command for all)."""
        if due:
            await self.redis.zadd(self.delayed, {str(i): at.timestamp() for i, at in due.items()})

    async def release_due(self, now: datetime, limit: int = 1000) -> int:
        """Move delayed rows that are now due onto the stream; how many were moved."""
        due = await self.redis.zrangebyscore(self.delayed, 0, now.timestamp(), start=0, num=limit)
        if not due:
            return 0
        # Only the process that removes an id moves it, so two workers never both do: one ZREM
        # per id (its reply says who removed it), all in one round trip.
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw in due:
                pipe.zrem(self.delayed, raw)
            removed = await pipe.execute()
        moved = [int(raw) for raw, gone in zip(due, removed, strict=True) if gone]
        await self.enqueue(moved)
        return len(moved)


def retry_delay(attempts: int, base: float, maximum: float) -> timedelta:
    """Exponential backoff from ``base`` seconds, doubling per attempt made, capped at
    ``maximum``, with jitter (half to all of it) so a burst of failures does not return as one."""
    return timedelta(seconds=min(maximum, base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0))


class StreamConsumer:
    """One consumer in an outbox stream's group: reads row ids, hands each read to
    ``deliver_many`` as a batch, acknowledges what it finished, releases delayed rows that
    fall due and takes over the entries of consumers that died (``reclaimed`` says what
    becomes of rows a dead consumer left half done). Subclasses send; this only moves ids."""

    def __init__(
        self,
        *,
        name: str,
        redis: Redis,
        outbox: Outbox,
        group: str,
        concurrency: int,
        reclaim_idle_seconds: int,
    ) -> None:
        self.name = name
        self.redis = redis
        self.outbox = outbox
        self.group = group
        self._batch = concurrency
        self._reclaim_idle_ms = reclaim_idle_seconds * 1000
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._grouped = False

    async def deliver_many(
        self,
        delivery_ids: Sequence[int],
        now: datetime | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> dict[int, str]:
        """Send what of these rows is due and unclaimed; what happened to each (``error``
        leaves its entry pending). ``on_done`` is called once per id when its send is over."""
        raise NotImplementedError

    async def reclaimed(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Settle rows a dead consumer left claimed, before their entries are handled again."""

    async def tidy(self, now: datetime, sweep: bool) -> None:
        """The pipeline's own housekeeping, every second (``sweep``: the rarer database
        sweeps too)."""

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if they are missing."""
        try:
            await self.redis.xgroup_create(self.outbox.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True

    async def run(self, stop: asyncio.Event, block_ms: int = 1000) -> None:
        """Consume until ``stop`` is set; in-flight sends finish before it returns.

        Only the blocking stream read is ever interrupted: cancelling a task in the middle of
        a database statement can leave its connection hanging when the pool closes.
        """
        housekeeping = sweeping = 0.0
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= housekeeping:
                        # The database sweeps look for rows stuck SWEEP_AFTER: every second
                        # would only rescan the table (and re-enqueue a long backlog's head).
                        sweep = time.monotonic() >= sweeping
                        await self.housekeeping(sweep)
                        housekeeping = time.monotonic() + 1.0
                        if sweep:
                            sweeping = time.monotonic() + SWEEP_AFTER.total_seconds() / 2
                    await self._consume(block_ms, stopping)
                except Exception:
                    # Redis or the database away: keep the loop alive, and recreate the
                    # group should a Redis restart have lost it.
                    log.exception("delivery worker loop failed; retrying in a second")
                    self._grouped = False
                    await asyncio.wait({stopping}, timeout=1.0)
        finally:
            stopping.cancel()
            await self.drain()

    async def _consume(self, block_ms: int, stopping: asyncio.Future[Any]) -> None:
        if not self._grouped:
            await self.ensure_group()
        reading = asyncio.ensure_future(self._read(block_ms))
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()
            # Entries read but not started stay pending; another consumer takes them.
            await asyncio.gather(reading, return_exceptions=True)
        elif entries := reading.result():
            await self._start(entries)

    async def _read(self, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        batch = await self.redis.xreadgroup(
            self.group, self.name, {self.outbox.stream: ">"}, count=self._batch, block=block_ms
        )
        return [entry for _, stream_entries in batch for entry in stream_entries]

    async def _start(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        # A slot per send; the entries read together are claimed together and their outcomes
        # recorded together (one task, a few statements per batch). A batch never exceeds the
        # slots: a task starts only once it holds all of its own, so waiting for more slots
        # than exist (a reclaim hands over up to 100 entries) would wait for ever.
        for start in range(0, len(entries), self._batch):
            batch = entries[start : start + self._batch]
            for _ in batch:
                await self._slots.acquire()
            task = asyncio.create_task(self._handle(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def drain(self) -> None:
        """Wait for the sends this worker has started."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def housekeeping(self, sweep: bool = True) -> None:
        """Release delayed rows that are due, take over a dead consumer's entries, and the
        pipeline's own tidying (``sweep``: with its database sweeps)."""
        if not self._grouped:
            await self.ensure_group()
        now = utcnow()
        await self.outbox.release_due(now)
        await self._reclaim(now)
        await self.tidy(now, sweep)

    async def _reclaim(self, now: datetime) -> None:
        # Redis 7 answers [cursor, entries, deleted ids]; 6.2 (the embedded default) only the
        # first two, with deleted entries as empty ones.
        reply = await self.redis.xautoclaim(
            self.outbox.stream,
            self.group,
            self.name,
            min_idle_time=self._reclaim_idle_ms,
            start_id="0-0",
            count=100,
        )
        claimed = [entry for entry in reply[1] if entry[1]]
        if len(claimed) < len(reply[1]):
            await self._ack_deleted()
        if not claimed:
            return
        await self.reclaimed([int(fields[b"id"]) for _, fields in claimed], now)
        await self._start(claimed)

    async def _ack_deleted(self) -> None:
        """Acknowledge deleted entries this consumer was just handed. Redis 6.2 claims them
        without saying which (a nil entry) and keeps them pending, so every pass would claim
        them again; they are the ids of ours that the stream no longer has."""
        mine = await self.redis.xpending_range(
            self.outbox.stream, self.group, min="-", max="+", count=100, consumername=self.name
        )
        ids = [p["message_id"] for p in mine]
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xrange(self.outbox.stream, entry_id, entry_id)
            found = await pipe.execute()
        gone = [entry_id for entry_id, entries in zip(ids, found, strict=True) if not entries]
        if gone:
            await self.redis.xack(self.outbox.stream, self.group, *gone)

    async def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        ids = [int(fields[b"id"]) for _, fields in entries]
        released = 0

        def done() -> None:
            nonlocal released
            released += 1
            self._slots.release()

        try:
            results = await self.deliver_many(ids, on_done=done)
            # An entry whose delivery failed unexpectedly is left pending: another consumer
            # takes it over after reclaim_idle_seconds.
            acked = [
                entry_id
                for (entry_id, _), delivery_id in zip(entries, ids, strict=True)
                if results.get(delivery_id) != "error"
            ]
            if acked:
                await self.redis.xack(self.outbox.stream, self.group, *acked)
        except Exception:
            log.exception("deliveries failed unexpectedly", extra={"count": len(ids)})
        finally:
            for _ in range(len(ids) - released):
                self._slots.release()


class DeliveryWorker(StreamConsumer):
    """One consumer of the delivery stream (see the module's docstring)."""

    def __init__(
        self,
        *,
        name: str,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        wechat: WeChatClient,
        outbox: Outbox,
        config: DeliveryConfig,
        zone: ZoneInfo,
        rules: ProgrammeRules,
        on_sent: Callable[[Claimed], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            redis=redis,
            outbox=outbox,
            group=GROUP,
            concurrency=config.concurrency,
            reclaim_idle_seconds=config.reclaim_idle_seconds,
        )
        # Called for each delivery WeChat accepted, once its outcome is recorded (a rating
        # question is open from then on).
        self.on_sent = on_sent
        self.sessions = sessions
        self.wechat = wechat
        self.config = config
        # For the points a campaign's push carries (their lots expire by the programme's rule).
        self.rules = rules
        self.windows = CustomerServiceWindows(redis)
        self.limiter = RateLimiter(redis, config.rate_per_second)
        self.limits = MarketingLimits(
            redis,
            zone,
            quiet_start=config.quiet_hours_start,
            quiet_end=config.quiet_hours_end,
            per_day=config.marketing_per_day,
            per_week=config.marketing_per_week,
            mass_per_month=config.mass_per_month,
        )
        self.mass = MassQueue(redis)

    async def reclaimed(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Rows still queued are sent as usual; rows left ``sending`` may have reached WeChat,
        which has no idempotency key, so they are recorded ``interrupted`` rather than resent."""
        async with self.sessions.begin() as session:
            interrupted = await abandon_interrupted(session, delivery_ids, now)
        if interrupted:
            log.warning("deliveries interrupted by a dead worker", extra={"count": interrupted})

    async def tidy(self, now: datetime, sweep: bool) -> None:
        """Send the mass batches that are ready; (``sweep``) put back rows a lost stream
        dropped, and settle rows a dead worker left ``sending``."""
        for batch in await self.mass.take(self.config.mass_batch_size):
            await self._send_mass(batch)
        if not sweep:
            return
        async with self.sessions() as session:
            stale = await due_queued(session, now - SWEEP_AFTER, limit=1000)
        await self.outbox.enqueue(stale)
        async with self.sessions.begin() as session:
            lost = await abandon_stale_sending(session, now - SWEEP_AFTER, now)
        if lost:
            log.warning("deliveries left sending by a dead worker", extra={"count": lost})

    async def deliver(self, delivery_id: int, now: datetime | None = None) -> str:
        """Send one delivery if it is due and unclaimed; returns what happened to it."""
        results = await self.deliver_many([delivery_id], now)
        return results[delivery_id]

    async def deliver_many(
        self,
        delivery_ids: Sequence[int],
        now: datetime | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> dict[int, str]:
        """Send those of these deliveries that are due and unclaimed: claimed in one
        statement, sent concurrently, their outcomes recorded in one executemany. Returns what
        happened to each (``not_claimed``, ``sent``, …, ``error`` for an unexpected failure,
        which leaves the row ``sending``). ``on_done`` is called once per id as soon as its
        send is over (the caller's flow control)."""
        now = now or utcnow()
        async with self.sessions.begin() as session:
            claimed = await claim_many(session, delivery_ids, now)
        results = dict.fromkeys(delivery_ids, "not_claimed")
        if on_done is not None:
            for _ in range(len(delivery_ids) - len(claimed)):
                on_done()
        # The template API's tokens for the whole batch, in one call to the shared bucket.
        await self.limiter.take(
            "template",
            sum(1 for c in claimed if c.openid and c.subscribed and self._template(c) is not None),
        )
        outcomes: list[tuple[Outcome, Claimed]] = []

        async def attempt(claimed_one: Claimed) -> None:
            try:
                result = await self._attempt(claimed_one, now)
            except Exception:
                log.exception("delivery failed unexpectedly", extra={"delivery": claimed_one.id})
                results[claimed_one.id] = "error"
                return
            finally:
                if on_done is not None:
                    on_done()
            if isinstance(result, Outcome):
                outcomes.append((result, claimed_one))
                results[claimed_one.id] = result.status
            else:
                results[claimed_one.id] = result

        await asyncio.gather(*(attempt(c) for c in claimed))
        if outcomes:
            async with self.sessions.begin() as session:
                recorded = utcnow()
                await record_outcomes(session, [o for o, _ in outcomes], recorded)
                # A campaign's reward is issued with the record that its push was sent: in
                # the same transaction, a few statements for the batch (or none without one).
                grants = [
                    grant
                    for outcome, c in outcomes
                    if outcome.status == "sent"
                    and (grant := grant_of(c.id, c.member_id, c.payload)) is not None
                ]
                await issue_rewards(session, grants, self.rules, recorded)
            for outcome, claimed_one in outcomes:
                if outcome.status == "sent" and self.on_sent is not None:
                    await self.on_sent(claimed_one)
                log.info(
                    "delivery",
                    extra={
                        "delivery": outcome.delivery_id,
                        "purpose": claimed_one.purpose,
                        "status": outcome.status,
                        **{
                            key: value
                            for key in ("channel", "reason", "errcode", "msgid")
                            if (value := getattr(outcome, key)) is not None
                        },
                    },
                )
        return results

    def _template(self, claimed: Claimed) -> Any:
        if claimed.category == MARKETING:
            return None
        return self.config.templates.get(claimed.purpose)

    async def _attempt(self, claimed: Claimed, now: datetime) -> Outcome | str:
        """Send a claimed delivery (the template API's token already taken); its outcome, or
        what became of it when it is not over yet (``retrying``, ``deferred``, ``batched``)."""
        if not claimed.openid or not claimed.subscribed:
            return Outcome(claimed.id, "skipped", reason="unsubscribed")
        if claimed.category == MARKETING:
            if claimed.opted_out:  # 退订 in chat; service notices still go
                return Outcome(claimed.id, "skipped", reason="opted_out")
            return await self._marketing(claimed, claimed.openid, now)
        if claimed.category == SURVEY and (held := await self._hold(claimed, now)) is not None:
            return held
        template = self._template(claimed)
        try:
            if template is not None:
                payload = template_message(
                    claimed.openid,
                    template.template_id,
                    template.fields,
                    claimed.payload.get("fields", {}),
                    template.url,
                )
                msgid = await self.wechat.send_template_message(payload)
                return Outcome(claimed.id, "sent", channel="template", msgid=msgid)
            if not await self.windows.take_slot(claimed.openid):
                return Outcome(claimed.id, "skipped", reason="no_channel")
            await self.limiter.take("custom")
            image = claimed.payload.get("image")
            await self.wechat.send_custom_message(
                image_message(claimed.openid, image)
                if image
                else text_message(claimed.openid, claimed.payload["text"])
            )
            return Outcome(claimed.id, "sent", channel="custom")
        except KeyError as exc:
            log.error("delivery payload lacks a field", extra={"delivery": claimed.id})
            return Outcome(claimed.id, "failed", reason=f"payload:{exc.args[0]}"[:64])
        except WeChatAPIError as exc:
            return await self._failed(claimed, exc, via_window=template is None)

    async def _hold(self, claimed: Claimed, now: datetime) -> Outcome | str | None:
        """Quiet hours defer an unasked-for push; the member's caps may skip it; else None."""
        if (until := self.limits.quiet_until(now)) is not None:
            async with self.sessions.begin() as session:
                await defer(session, claimed.id, until, now)
            await self.outbox.enqueue([claimed.id], at=until)
            return "deferred"
        if not await self.limits.take_marketing(claimed.member_id, now):
            return Outcome(claimed.id, "skipped", reason="frequency_cap")
        return None

    async def _marketing(self, claimed: Claimed, openid: str, now: datetime) -> Outcome | str:
        """Quiet hours defer it; the caps may skip it; then the window, else a mass send."""
        if (held := await self._hold(claimed, now)) is not None:
            return held
        text = claimed.payload["text"]
        if await self.windows.take_slot(openid):
            try:
                await self.limiter.take("custom")
                await self.wechat.send_custom_message(text_message(openid, text))
            except WeChatAPIError as exc:
                return await self._failed(claimed, exc, via_window=True)
            return Outcome(claimed.id, "sent", channel="custom")
        if not await self.limits.take_mass(claimed.member_id, now):
            return Outcome(claimed.id, "skipped", reason="mass_allowance")
        await self.mass.add(claimed.id, openid, text)
        return "batched"

    async def _send_mass(self, batch: MassBatch) -> None:
        now = utcnow()
        if len(batch.openids) < 2:
            async with self.sessions.begin() as session:
                await finish_many(session, batch.delivery_ids, "skipped", now, reason="mass_alone")
            return
        try:
            await self.limiter.take("mass")
            msgid = await self.wechat.send_mass_text(
                batch.openids, batch.text, f"{batch.key}-{batch.delivery_ids[0]}"
            )
        except WeChatAPIError as exc:
            if exc.errcode == MASS_ALREADY_SENT:
                # The client's retry of an attempt answered too late: that attempt went out.
                # Recorded sent, with why there is no msg_id.
                async with self.sessions.begin() as session:
                    await finish_many(
                        session,
                        batch.delivery_ids,
                        "sent",
                        now,
                        channel="mass",
                        reason="clientmsgid_exists",
                        errcode=exc.errcode,
                    )
                    await self._reward(session, batch.delivery_ids, now)
                log.info("mass send already accepted", extra={"count": len(batch.openids)})
                return
            async with self.sessions.begin() as session:
                await finish_many(
                    session,
                    batch.delivery_ids,
                    "failed",
                    now,
                    channel="mass",
                    reason="wechat_error",
                    errcode=exc.errcode,
                )
            log.warning(
                "mass send failed", extra={"errcode": exc.errcode, "count": len(batch.openids)}
            )
            return
        async with self.sessions.begin() as session:
            await finish_many(session, batch.delivery_ids, "sent", now, channel="mass", msgid=msgid)
            await self._reward(session, batch.delivery_ids, now)
        log.info("mass send", extra={"msg_id": msgid, "count": len(batch.openids)})

    async def _reward(
        self, session: AsyncSession, delivery_ids: Sequence[int], now: datetime
    ) -> None:
        """Issue the campaign rewards of a mass send's pushes, recorded sent in ``session``."""
        await issue_rewards(
            session, await grants_of_deliveries(session, delivery_ids), self.rules, now
        )

    async def _failed(
        self, claimed: Claimed, exc: WeChatAPIError, *, via_window: bool
    ) -> Outcome | str:
        if via_window and exc.errcode in WINDOW_ERRORS:
            assert claimed.openid is not None
            await self.windows.close(claimed.openid)
            return Outcome(claimed.id, "skipped", reason="no_channel", errcode=exc.errcode)
        if exc.unanswered:
            # WeChat may have delivered it: sending again could make two. Recorded, not retried.
            return Outcome(claimed.id, "failed", reason="unanswered")
        if exc.transient and claimed.attempts < self.config.max_attempts:
            now = utcnow()
            at = now + retry_delay(
                claimed.attempts, self.config.retry_base_seconds, self.config.retry_max_seconds
            )
            async with self.sessions.begin() as session:
                await retry_later(session, claimed.id, at, now, exc.errcode)
            await self.outbox.enqueue([claimed.id], at=at)
            return "retrying"
        reason = "transient_exhausted" if exc.transient else "wechat_error"
        return Outcome(claimed.id, "failed", reason=reason, errcode=exc.errcode)
