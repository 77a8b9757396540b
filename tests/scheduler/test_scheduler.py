"""The scheduler: one leader across processes, jobs persisted in the database, runs per period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models.rules import ProgrammeRules
from scheduler.jobs import JOBS, Job, JobContext
from scheduler.jobstore import TABLE, create_sync_engine, sync_database_url
from scheduler.leader import LeaderLock
from scheduler.runner import ProgrammeScheduler
from scheduler.runs import JobRuns
from scheduler.settings import DEFAULT_SCHEDULE, SchedulerConfig
from tests.helpers import ROOT
from tests.services import STARTUP_SECONDS, child_process

RULES = ProgrammeRules()
ZONE = RULES.zone  # Asia/Shanghai: UTC+8, no daylight saving
KEY = "test:leader"


async def wait_for(condition: Callable[[], bool], within: float) -> float:
    """Seconds until ``condition`` holds; fails the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not condition():
        if loop.time() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)
    return loop.time() - started


class Changes:
    """Records a lock's gained/lost callbacks."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def lock(self, redis: Redis, ttl: float) -> LeaderLock:
        return LeaderLock(
            redis,
            KEY,
            ttl=ttl,
            on_gained=lambda: self.seen.append("gained"),
            on_lost=lambda: self.seen.append("lost"),
        )


# --- the leader lock ------------------------------------------------------------------------


async def test_one_leader_and_a_takeover_within_the_ttl_after_a_crash(redis: Redis) -> None:
    ttl = 1.0
    first, second = Changes(), Changes()
    a, b = first.lock(redis, ttl), second.lock(redis, ttl)
    await asyncio.gather(a.start(), b.start())
    await wait_for(lambda: a.is_leader or b.is_leader, within=STARTUP_SECONDS)
    # Over two renewal periods, exactly one of them leads at every moment.
    for _ in range(70):
        assert a.is_leader != b.is_leader
        await asyncio.sleep(0.01)
    leader, follower = (a, b) if a.is_leader else (b, a)
    assert await redis.get(KEY) == leader.token.encode()  # type: ignore[union-attr]

    # A crash: the leader stops renewing and never releases.
    await leader.stop(release=False)
    assert await redis.get(KEY) is not None
    took = await wait_for(lambda: follower.is_leader, within=ttl + 0.5)
    assert took <= ttl + 0.2

    # The old holder's token no longer holds the key: it can neither renew nor release it.
    assert follower.token != leader.token
    assert await leader.renew() is False
    assert await leader.release() is False
    assert await redis.get(KEY) == follower.token.encode()  # type: ignore[union-attr]
    assert follower.is_leader
    assert not leader.is_leader
    assert await redis.pttl(KEY) > 0

    await follower.stop()
    assert await redis.get(KEY) is None  # released at once, not left to expire
    assert sorted([first.seen, second.seen]) == [["gained", "lost"], ["gained", "lost"]]


async def test_stop_ends_the_lock_even_when_its_renewal_swallows_the_cancellation(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands inside the Redis client's reply handling can be swallowed
    there: the renewal returns as if its reply had come. stop() must still end the loop and
    step down; it used to wait for that loop for ever (a CI run hung on it)."""
    changes = Changes()
    lock = changes.lock(redis, ttl=3.0)
    await lock.start()
    await wait_for(lambda: lock.is_leader, within=STARTUP_SECONDS)
    entered = asyncio.Event()

    async def swallowing_renewal(**_: object) -> int:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # as if the reply had come
            await asyncio.sleep(30)  # waiting for the reply
        return 1

    monkeypatch.setattr(lock, "_renew", swallowing_renewal)
    await asyncio.wait_for(entered.wait(), timeout=5)
    loop = lock._task  # the lock's own loop, which must be over when stop() returns
    assert loop is not None
    took = asyncio.get_running_loop().time()
    await asyncio.wait_for(lock.stop(release=False), timeout=6)
    took = asyncio.get_running_loop().time() - took
    assert loop.done()
    assert took < 3  # not the 6 s after which only wait_for's own cancel would end it
    assert not lock.is_leader
    assert changes.seen == ["gained", "lost"]


async def test_a_leader_whose_key_is_taken_stops_leading_at_once(redis: Redis) -> None:
    ttl = 1.5
    changes = Changes()
    lock = changes.lock(redis, ttl)
    async with lock:
        await wait_for(lambda: lock.is_leader, within=STARTUP_SECONDS)
        # The key expired and another process took it (as after a long pause of this one).
        await redis.set(KEY, "another-process", px=int(ttl * 1000))
        stepped_down = await wait_for(lambda: not lock.is_leader, within=ttl)
        assert stepped_down <= ttl / 3 + 0.2  # at the next renewal
        assert changes.seen == ["gained", "lost"]
        assert await redis.get(KEY) == b"another-process"  # not released by the loser
        # When the other process's key goes, this one leads again.
        await redis.delete(KEY)
        await wait_for(lambda: lock.is_leader, within=ttl)
    assert changes.seen == ["gained", "lost", "gained", "lost"]
    assert await redis.get(KEY) is None


async def test_a_leader_steps_down_before_its_lease_ends_when_redis_stops_answering(
    redis: Redis,
) -> None:
    ttl = 1.0
    changes = Changes()
    lock = changes.lock(redis, ttl)
    async with lock:
        await wait_for(lambda: lock.is_leader, within=STARTUP_SECONDS)
        # Every client's commands wait for 1.5 s: the renewal cannot complete within the lease.
        await redis.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        lost = await wait_for(lambda: changes.seen == ["gained", "lost"], within=ttl + 0.1)
        assert lost <= ttl
        assert not lock.is_leader
        # Redis answers again: leadership comes back (the stale key is released or expires).
        await wait_for(lambda: lock.is_leader, within=STARTUP_SECONDS)


def _stall(seconds: float) -> None:
    """Block the event loop, as a long synchronous call or a paused VM would."""
    time.sleep(seconds)


async def test_a_leader_whose_loop_stalls_past_its_lease_is_no_longer_leader(
    redis: Redis,
) -> None:
    ttl = 1.0
    changes = Changes()
    lock = changes.lock(redis, ttl)
    async with lock:
        await wait_for(lambda: lock.is_leader, within=STARTUP_SECONDS)
        _stall(ttl + 0.1)
        # Before its renewal task has had a chance to run: another process may lead by now.
        assert not lock.is_leader
        assert await redis.get(KEY) is None  # expired in Redis, free for anyone
        await wait_for(lambda: changes.seen == ["gained", "lost", "gained"], within=STARTUP_SECONDS)


# --- settings -------------------------------------------------------------------------------


def test_every_programme_job_has_a_default_schedule() -> None:
    config = SchedulerConfig()
    assert set(config.jobs) == set(JOBS)
    assert config.leader_ttl_seconds == 30
    assert config.misfire_grace_seconds == 3600
    fire = config.triggers(ZONE)["expire-points"].get_next_fire_time(
        None, datetime(2025, 3, 1, 12, 0, tzinfo=ZONE)
    )
    assert fire == datetime(2025, 3, 2, 0, 5, tzinfo=ZONE)


def test_settings_reject_an_unknown_job_naming_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown job 'expire-point' \(known jobs: "):
        SchedulerConfig(jobs={"expire-point": "5 0 * * *"})


@pytest.mark.parametrize(
    ("crontab", "reason"),
    [
        ("61 0 * * *", "higher than the maximum value"),
        ("5 0 * *", "Wrong number of fields"),
        ("*/5 * * * * *", "Wrong number of fields"),
        ("5 0 * * funday", 'Invalid weekday name "funday"'),
    ],
)
def test_settings_reject_a_bad_crontab(crontab: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=r"job 'refresh-segments': bad crontab") as raised:
        SchedulerConfig(jobs={"refresh-segments": crontab})
    assert reason in str(raised.value)


def test_the_job_store_gets_the_sync_form_of_the_database_url() -> None:
    assert sync_database_url("sqlite+aiosqlite:///data/bot.db") == "sqlite:///data/bot.db"
    assert (
        sync_database_url("postgresql+asyncpg://u:p@db:5432/bot")
        == "postgresql+psycopg://u:p@db:5432/bot"
    )
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        sync_database_url("mysql://u:p@db/bot")


# --- the scheduler --------------------------------------------------------------------------


def _drop_job_table(db_url: str) -> None:
    # The job store's table is not in the models' metadata: leave no trace for the schema test.
    engine = create_sync_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The lane's sessions, and an empty job store before and after the test."""
    _drop_job_table(db_url)
    engine = create_engine(db_url)
    yield create_sessionmaker(engine)
    await engine.dispose()
    _drop_job_table(db_url)


def _stored_jobs(db_url: str) -> dict[str, float]:
    engine = create_sync_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT id, next_run_time FROM {TABLE}")).all()
    engine.dispose()
    return {row.id: row.next_run_time for row in rows}


async def test_jobs_are_persisted_with_their_next_run_in_the_programme_zone(
    db_url: str, redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async def lead_once(config: SchedulerConfig) -> None:
        scheduler = ProgrammeScheduler(
            config, database_url=db_url, redis=redis, sessions=sessions, rules=RULES, zone=ZONE
        )
        await scheduler.start()
        await wait_for(lambda: scheduler.is_leader, within=STARTUP_SECONDS)
        await scheduler.stop()

    config = SchedulerConfig(leader_ttl_seconds=2)
    await lead_once(config)
    stored = _stored_jobs(db_url)
    assert sorted(stored) == sorted(DEFAULT_SCHEDULE)
    now = datetime.now(UTC)
    when = {name: datetime.fromtimestamp(stamp, UTC) for name, stamp in stored.items()}
    assert all(now < moment for moment in when.values())
    # 00:05 in Shanghai is 16:05 UTC the day before: the zone was applied, not UTC's.
    assert (when["expire-points"].hour, when["expire-points"].minute) == (16, 5)
    assert (when["expire-coupons"].hour, when["expire-coupons"].minute) == (16, 10)
    assert (when["refresh-segments"].hour, when["refresh-segments"].minute) == (19, 0)
    tiers = when["reevaluate-tiers"].astimezone(ZONE)
    assert (tiers.day, tiers.hour, tiers.minute) == (1, 2, 30)

    # Leading again registers the same jobs again: no duplicates, the stored times are kept.
    await lead_once(config)
    assert _stored_jobs(db_url) == stored

    # A changed schedule replaces its job; a job no longer configured is removed.
    await lead_once(SchedulerConfig(leader_ttl_seconds=2, jobs={"expire-points": "15 1 * * *"}))
    stored = _stored_jobs(db_url)
    assert list(stored) == ["expire-points"]
    moved = datetime.fromtimestamp(stored["expire-points"], UTC)
    assert (moved.hour, moved.minute) == (17, 15)


async def test_only_the_leader_runs_jobs_and_a_successor_runs_each_later_period_once(
    db_url: str,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.runs")
    runs: list[tuple[str, datetime]] = []

    def recording(process: str) -> dict[str, Job]:
        async def tick(ctx: JobContext) -> str:
            runs.append((process, ctx.now))
            return f"{process} ticked"

        return {"tick": Job("tick", "records its runs", tick)}

    # Two seconds: at least one period falls due between the crash and the takeover.
    ttl = 2
    config = SchedulerConfig(leader_ttl_seconds=ttl, jobs={})

    def process(name: str) -> ProgrammeScheduler:
        return ProgrammeScheduler(
            config,
            database_url=db_url,
            redis=redis,
            sessions=sessions,
            rules=RULES,
            zone=ZONE,
            jobs=recording(name),
            triggers={"tick": CronTrigger(second="*", timezone=ZONE)},
        )

    a, b = process("a"), process("b")
    try:
        await a.start()
        await wait_for(lambda: a.is_leader, within=STARTUP_SECONDS)
        await b.start()
        await wait_for(lambda: len(runs) >= 2, within=4)
        assert {name for name, _ in runs} == {"a"}
        assert not b.is_leader

        # Kill the leader: it stops renewing and never releases (its processing stops too).
        await a.lock.stop(release=False)
        before_crash = len(runs)
        took = await wait_for(lambda: b.is_leader, within=ttl + 0.5)
        took_over_at = datetime.now(UTC)
        assert took <= ttl + 0.2
        await wait_for(lambda: sum(name == "b" for name, _ in runs) >= 2, within=4)
    finally:
        await b.stop()
        await a.stop()  # its token no longer holds anything: this releases nothing

    a_runs = [when for name, when in runs if name == "a"]
    b_runs = [when for name, when in runs if name == "b"]
    assert len(a_runs) == before_crash
    # No period ran twice, and the successor went on after the last period the leader ran.
    assert max(Counter(when for _, when in runs).values()) == 1
    assert min(b_runs) > max(a_runs)
    # Its first run was a period that fell due while nobody led, caught up rather than skipped.
    assert min(b_runs) <= took_over_at
    # Jobs are given their scheduled time (UTC), whole seconds here.
    assert all(when.tzinfo is UTC and when.microsecond == 0 for _, when in runs)

    logged = [r for r in caplog.records if r.getMessage() == "job run"]
    assert len(logged) >= len(runs)
    assert {r.job for r in logged} == {"tick"}  # type: ignore[attr-defined]
    assert {"a ticked", "b ticked"} <= {r.outcome for r in logged}  # type: ignore[attr-defined]
    assert all(r.seconds >= 0 for r in logged)  # type: ignore[attr-defined]
    # The follower never even tried: it does not process the store while another leads.
    assert not [r for r in logged if r.outcome.startswith("skipped")]  # type: ignore[attr-defined]


# A scheduler process whose tick job records each run in Redis; the test kills it with SIGKILL.
_PROCESS = """
import asyncio, sys
from apscheduler.triggers.cron import CronTrigger
from redis.asyncio import Redis
from bot.database import create_engine, create_sessionmaker
from scheduler.jobs import Job
from models.rules import ProgrammeRules
from scheduler.runner import ProgrammeScheduler
from scheduler.runs import JobRuns
from scheduler.settings import SchedulerConfig

async def main(db_url, redis_url, ttl):
    redis = Redis.from_url(redis_url)
    rules = ProgrammeRules()

    async def tick(ctx):
        await redis.rpush("test:runs", "child " + ctx.now.isoformat())
        return "child ticked"

    scheduler = ProgrammeScheduler(
        SchedulerConfig(leader_ttl_seconds=int(ttl), jobs={}),
        database_url=db_url, redis=redis, sessions=create_sessionmaker(create_engine(db_url)),
        rules=rules, zone=rules.zone, jobs={"tick": Job("tick", "", tick)},
        triggers={"tick": CronTrigger(second="*", timezone=rules.zone)},
    )
    await scheduler.start()
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_killed_leader_process_is_replaced_within_the_ttl(
    db_url: str, redis: Redis, redis_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ttl = 2

    async def runs() -> list[tuple[str, datetime]]:
        entries = [entry.decode().split(" ") for entry in await redis.lrange("test:runs", 0, -1)]
        return [(who, datetime.fromisoformat(when)) for who, when in entries]

    async def count(who: str, at_least: int, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while sum(name == who for name, _ in await runs()) < at_least:
            assert loop.time() < deadline, f"{who} ran fewer than {at_least} times"
            await asyncio.sleep(0.05)

    async def tick(ctx: JobContext) -> str:
        await redis.rpush("test:runs", "here " + ctx.now.isoformat())
        return "here ticked"

    started = child_process(sys.executable, "-c", _PROCESS, db_url, redis_url, str(ttl), cwd=ROOT)
    here = ProgrammeScheduler(
        SchedulerConfig(leader_ttl_seconds=ttl, jobs={}),
        database_url=db_url,
        redis=redis,
        sessions=sessions,
        rules=RULES,
        zone=ZONE,
        jobs={"tick": Job("tick", "", tick)},
        triggers={"tick": CronTrigger(second="*", timezone=ZONE)},
    )
    try:
        async with started as child:
            await count("child", 1, within=STARTUP_SECONDS)  # imports and start-up
            await here.start()
            await count("child", 2, within=3)
            assert not here.is_leader
            child.send_signal(signal.SIGKILL)  # no release, no clean-up of any kind
            await child.wait()
            took = await wait_for(lambda: here.is_leader, within=ttl + 0.5)
            assert took <= ttl + 0.2
            await count("here", 2, within=4)
    finally:
        await here.stop()

    recorded = await runs()
    child_runs = [when for who, when in recorded if who == "child"]
    here_runs = [when for who, when in recorded if who == "here"]
    assert max(Counter(when for _, when in recorded).values()) == 1
    assert min(here_runs) > max(child_runs)


async def test_a_run_happens_only_while_leading_once_per_period_and_stops_on_a_loss(
    redis: Redis,
) -> None:
    leading = True
    started = asyncio.Event()
    ran: list[datetime] = []

    async def job(ctx: JobContext) -> str:
        ran.append(ctx.now)
        if ctx.now.minute == 5:
            started.set()
            await asyncio.sleep(10)
        return "done"

    runs = JobRuns(
        jobs={"job": Job("job", "", job)},
        sessions=async_sessionmaker(),
        rules=RULES,
        redis=redis,
        is_leader=lambda: leading,
        claim_prefix="test:ran",
        claim_seconds=60,
    )
    period = datetime(2025, 3, 2, 0, 0, tzinfo=ZONE)
    assert await runs.run("job", period) == "done"
    assert ran == [period]
    assert ran[0].tzinfo is UTC
    assert await runs.run("job", period) == "skipped: this period already ran"
    assert await runs.run("job", period.replace(minute=1)) == "done"

    leading = False
    assert await runs.run("job", period.replace(minute=2)) == "skipped: not the leader"
    assert len(ran) == 2

    # Leadership lost mid-run: the run is cancelled, and says so.
    leading = True
    slow = asyncio.create_task(runs.run("job", period.replace(minute=5)))
    await started.wait()
    assert runs.cancel_all() == 1
    assert await slow == "cancelled: leadership lost"
    assert runs.cancel_all() == 0
