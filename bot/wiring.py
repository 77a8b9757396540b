"""The app's resources: typed keys, and the cleanup contexts that open and close them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Config
from bot.console import auth as console_auth
from bot.console.sweeps import ConsoleSweeps
from bot.database import create_engine, create_reader, create_sessionmaker, dispose_reader
from bot.metrics import Metrics
from bot.push.notifications import notify_forever
from bot.push.outbox import DeliveryWorker, Outbox
from bot.push.receipts import ReceiptFlusher, ReceiptQueue
from bot.push.shop_hooks import HookWorker, fan_out_forever, hooks_http, hooks_outbox
from bot.redis_server import open_redis
from bot.request_log import RequestLog
from bot.tasks import BackgroundTasks
from bot.wechat.client import WeChatClient
from bot.wechat.cs_window import CustomerServiceWindows
from bot.wechat.gate import InboundGate
from bot.wechat.handoff import Handoffs
from bot.wechat.interactions import InteractionFlusher
from bot.wechat.listener import WebhookListener
from bot.wechat.points_cache import PointsCache
from bot.wechat.questions import Questions
from bot.wechat.rate_limit import RateLimiter
from bot.wechat.redis_pipe import RedisPipe
from bot.wechat.referral_links import ReferralShares
from bot.wechat.taught import TaughtPhrasings
from bot.wechat.webhook import Webhook
from handlers.dispatcher import Dispatcher
from handlers.inbound import Services
from handlers.router import Router
from handlers.understanding.pipeline import Understander
from models.new_members import NewMembers
from models.redemption_groups import Redemptions
from scheduler.campaigns import CampaignDispatcher
from scheduler.rating_questions import question_opener
from scheduler.runner import ProgrammeScheduler

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
ENGINE = web.AppKey("engine", AsyncEngine)
# What handlers' read-only answers use (bot/database.py create_reader).
READER = web.AppKey("reader", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
REDIS = web.AppKey("redis", Redis)
PIPE = web.AppKey("pipe", RedisPipe)
POINTS = web.AppKey("points", PointsCache)
WECHAT = web.AppKey("wechat", WeChatClient)
TASKS = web.AppKey("tasks", BackgroundTasks)
WEBHOOK = web.AppKey("webhook", Webhook)
ROUTER = web.AppKey("router", Router)
SERVICES = web.AppKey("services", Services)
OUTBOX = web.AppKey("outbox", Outbox)
TAUGHT = web.AppKey("taught", TaughtPhrasings)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
LISTENER = web.AppKey("listener", WebhookListener)


def questions_store(redis: Redis, config: Config) -> Questions:
    """Members' open rating questions, kept ``[programme.ratings] question_hours``."""
    return Questions(redis, config.programme.ratings.question_hours * 3600)


async def redis(app: web.Application) -> AsyncIterator[None]:
    """Redis: the configured server, or the embedded one; the hot path's pipelined link; and
    the outbox every role enqueues pushes on."""
    async with open_redis(app[CONFIG].redis) as client:
        app[REDIS] = client
        app[PIPE] = pipe = RedisPipe.like(client)
        app[OUTBOX] = Outbox(client)
        # Connect now, not under the first burst; a Redis that is down is retried per request.
        with contextlib.suppress(RedisError):
            await pipe.execute("PING")
        yield
        await pipe.close()


async def database(app: web.Application) -> AsyncIterator[None]:
    """The SQL engine, the session factory, and the points cache its commits keep current."""
    config = app[CONFIG].database
    engine = create_engine(config.url, pool_size=config.pool_size, max_overflow=config.max_overflow)
    app[ENGINE] = engine
    points = PointsCache(app[PIPE], app[CONFIG].programme.zone)
    app[POINTS] = points
    app[SESSIONS] = create_sessionmaker(engine, points.forget_soon)
    app[READER] = reader = create_reader(engine)
    yield
    await points.drain()
    await dispose_reader(reader, engine)
    await engine.dispose()


async def wechat(app: web.Application) -> AsyncIterator[None]:
    """The outbound WeChat API client and its HTTP connection pool."""
    config = app[CONFIG].wechat
    async with aiohttp.ClientSession() as http:
        app[WECHAT] = WeChatClient.from_config(
            config, http=http, redis=app[REDIS], metrics=app[METRICS]
        )
        yield


async def webhook(app: web.Application) -> AsyncIterator[None]:
    """The webhook, its dispatcher and the background work it starts."""
    config = app[CONFIG]
    router = app[ROUTER]
    matcher = Understander.from_config(config.chat, config.programme)
    gate = InboundGate(app[PIPE], config.wechat.dedupe_ttl_seconds)
    reader = app[READER]
    services = Services(
        intents=matcher,
        sessions=app[SESSIONS],
        reader=reader,
        rules=config.programme,
        redis=app[REDIS],
        member_ids=gate,
        points=app[POINTS],
        receipts=ReceiptQueue(app[PIPE], app[SESSIONS]),
        pushes=app[OUTBOX],
        shares=ReferralShares(
            app[SESSIONS], app[WECHAT], config.programme, config.server.public_url
        ),
        questions=questions_store(app[REDIS], config),
        handoffs=Handoffs(app[REDIS]),
        handoff_mode=config.console.handoff,
        service_hours=config.console.service_hours,
        priority=config.console.priority,
        public_url=config.server.public_url,
        capabilities=tuple(dict.fromkeys(router.intents())),
        faq_answers={key: entry.answer for key, entry in config.chat.faq.items()},
        redemptions=Redemptions(app[SESSIONS]),
        new_members=NewMembers(reader, app[SESSIONS]),
    )
    app[SERVICES] = services
    dispatcher = Dispatcher(router, services)
    tasks = BackgroundTasks()
    app[TASKS] = tasks
    app[WEBHOOK] = Webhook(
        config.wechat,
        gate,
        dispatcher,
        app[WECHAT],
        app[METRICS],
        tasks,
        windows=CustomerServiceWindows(app[REDIS]),
        limiter=RateLimiter(app[REDIS], config.delivery.rate_per_second),
    )
    stop = asyncio.Event()
    flusher = InteractionFlusher(app[PIPE], app[SESSIONS])
    flushing = asyncio.create_task(flusher.run(stop), name="interaction-flush")
    taught = TaughtPhrasings(
        app[REDIS], services.reader, app[SESSIONS], matcher, config.chat.miss_retention_days
    )
    app[TAUGHT] = taught
    with contextlib.suppress(RedisError, SQLAlchemyError, OSError):  # the loop retries
        await taught.refresh()
    learning = asyncio.create_task(
        taught.run(stop, config.chat.taught_refresh_seconds), name="taught-phrasings"
    )
    listener = WebhookListener(
        app[WEBHOOK], app[REQUEST_LOG], app[METRICS], config.wechat.max_body_bytes
    )
    if config.server.webhook_port is not None:
        # Last: a start-up step failing after it would leave the port open.
        await listener.start(config.server.host, config.server.webhook_port)
        app[LISTENER] = listener
    yield
    # The pushes that have arrived are answered before what they use closes.
    await listener.stop()
    await tasks.close()
    await services.redemptions.close()
    await services.new_members.close()
    # It flushes once more as it stops; what a failure leaves in Redis, the next process writes.
    stop.set()
    await asyncio.gather(flushing, learning)


async def delivery(app: web.Application) -> AsyncIterator[None]:
    """The push pipeline in this process: ``[delivery] workers`` consumers, the event
    notifier, the template-receipt flusher, and the shop events' fan-out and ``[hooks]
    consumers`` (the worker role)."""
    config = app[CONFIG]
    async with run_pipeline(config, app[REDIS], app[SESSIONS], app[WECHAT], app[OUTBOX]):
        yield


@contextlib.asynccontextmanager
async def run_pipeline(
    config: Config,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    wechat: WeChatClient,
    outbox: Outbox,
) -> AsyncIterator[list[DeliveryWorker]]:
    """Run the pipeline's loops until the block exits, then stop them, letting sends finish."""
    workers = [
        DeliveryWorker(
            name=f"{socket.gethostname()}-{os.getpid()}-{n}",
            redis=redis,
            sessions=sessions,
            wechat=wechat,
            outbox=outbox,
            config=config.delivery,
            zone=config.programme.zone,
            rules=config.programme,
            on_sent=question_opener(questions_store(redis, config)),
        )
        for n in range(config.delivery.workers)
    ]
    # Loops stop at their next pause, never in the middle of a statement (see DeliveryWorker.run).
    stop = asyncio.Event()
    loops = [asyncio.create_task(worker.run(stop), name=worker.name) for worker in workers]
    if workers:
        notifier = notify_forever(
            sessions, outbox, config.programme, stop, lanes=config.console.priority_tiers
        )
        loops.append(asyncio.create_task(notifier, name="event-notifier"))
    flusher = ReceiptFlusher(redis, sessions).run(stop)
    loops.append(asyncio.create_task(flusher, name="receipts"))
    # Shop systems' endpoints get their own connection pool, apart from WeChat's, which
    # connects to public addresses only (unless [hooks] allow_private_targets).
    async with hooks_http(config.hooks) as http:
        senders = [
            HookWorker(
                name=f"{socket.gethostname()}-{os.getpid()}-hooks-{n}",
                redis=redis,
                sessions=sessions,
                http=http,
                config=config.hooks,
            )
            for n in range(config.hooks.consumers if workers else 0)
        ]
        loops += [asyncio.create_task(sender.run(stop), name=sender.name) for sender in senders]
        if senders:
            fanning = fan_out_forever(sessions, hooks_outbox(redis), config.hooks, stop)
            loops.append(asyncio.create_task(fanning, name="shop-events"))
        try:
            yield workers
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)


async def console(app: web.Application) -> AsyncIterator[None]:
    """The console's sessions, and its sweeps (assignment, claim timeouts, idle returns)."""
    config = app[CONFIG]
    secure = config.server.public_url.startswith("https://")
    app[console_auth.SESSIONS] = console_auth.Sessions(app[REDIS], config.console, secure)
    stop = asyncio.Event()
    sweeps = ConsoleSweeps(app[SESSIONS], Handoffs(app[REDIS]), config.console)
    sweeping = asyncio.create_task(sweeps.run(stop), name="console-sweeps")
    yield
    stop.set()
    await sweeping


async def scheduling(app: web.Application) -> AsyncIterator[None]:
    """The programme's scheduler (``[scheduler] enabled``): every process may run one; only
    the one holding the Redis leader lock runs jobs and starts and plans campaign runs."""
    config = app[CONFIG]
    if not config.scheduler.enabled:
        yield
        return
    scheduler = ProgrammeScheduler(
        config.scheduler,
        database_url=config.database.url,
        redis=app[REDIS],
        sessions=app[SESSIONS],
        rules=config.programme,
        zone=config.programme.zone,
    )
    await scheduler.start()
    campaigns = CampaignDispatcher(
        app[SESSIONS], app[OUTBOX], config.programme.zone, lambda: scheduler.is_leader
    )
    stop = asyncio.Event()
    dispatching = asyncio.create_task(campaigns.run(stop), name="campaigns")
    yield
    stop.set()
    await dispatching
    await scheduler.stop()
