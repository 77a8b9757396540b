"""The programme scheduler: the periodic jobs on a clock, run by exactly one leader process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import obj_to_ref
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.rules import ProgrammeRules
from scheduler.jobs import JOBS, Job
from scheduler.jobstore import create_jobstore
from scheduler.leader import LeaderLock
from scheduler.runs import JobRuns, RunExecutor, run_job
from scheduler.settings import SchedulerConfig

log = logging.getLogger(__name__)

LOCK_KEY = "scheduler:leader"
_RUN_JOB_REF = obj_to_ref(run_job)
# While leading, look at the store this often even if no wake-up is due: APScheduler 3 does
# not re-arm its timer when a store write fails mid-round, and would then wait for ever.
_HEARTBEAT_SECONDS = 60.0


class ProgrammeScheduler:
    """APScheduler 3 over a persistent job store, processing jobs only while leading.

    Every scheduler process starts APScheduler *paused*: the store is opened, nothing runs.
    Gaining the leader lock registers the configured jobs and resumes; losing it pauses and
    cancels runs in progress, before the lock does anything else. This rather than starting
    APScheduler on each gain: ``AsyncIOScheduler.shutdown`` completes on a later loop
    iteration, so a quick lose-then-gain would find it still running, whereas pause and resume
    take effect at once. Followers never write the store, so a process starting while another
    leads cannot disturb the leader's schedule.

    On gaining, a job whose trigger is unchanged keeps the next run time found in the store:
    a period that fell due while nobody led (the old leader died, the new one was still
    waiting for its key to expire) is still run, once, if within ``misfire_grace_seconds``.
    Jobs coalesce and have one instance at a time, and each run is claimed in Redis per
    scheduled time, so no period runs twice. A period whose run is cut short by a leadership
    change is not run again: the jobs only do what is due, so the next period catches up.
    """

    def __init__(
        self,
        config: SchedulerConfig,
        *,
        database_url: str,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        rules: ProgrammeRules,
        zone: ZoneInfo,
        jobs: Mapping[str, Job] | None = None,
        triggers: Mapping[str, BaseTrigger] | None = None,
        lock_key: str = LOCK_KEY,
    ) -> None:
        """``database_url`` is the service's async URL; the store uses its sync form.

        ``jobs`` (default ``scheduler.jobs.JOBS``) and ``triggers`` (default: ``config.jobs`` as
        crontabs in ``zone``) are for tests and tools that schedule other jobs.
        """
        self.config = config
        self._database_url = database_url
        self._zone = zone
        self._triggers = dict(triggers) if triggers is not None else config.triggers(zone)
        jobs = JOBS if jobs is None else jobs
        unknown = sorted(set(self._triggers) - set(jobs))
        if unknown:
            raise ValueError(f"no job to schedule for {', '.join(unknown)}")
        self.lock = LeaderLock(
            redis,
            lock_key,
            ttl=config.leader_ttl_seconds,
            on_gained=self._lead,
            on_lost=self._follow,
        )
        self._runs = JobRuns(
            jobs=jobs,
            sessions=sessions,
            rules=rules,
            redis=redis,
            is_leader=lambda: self.lock.is_leader,
            claim_prefix=f"{lock_key}:ran",
            # A period can be attempted again only within the misfire grace; a day's margin.
            claim_seconds=config.misfire_grace_seconds + 86_400,
        )
        self._scheduler: AsyncIOScheduler | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The underlying APScheduler (for inspection; do not add or change jobs on it)."""
        if self._scheduler is None:
            raise RuntimeError("the programme scheduler is not started")
        return self._scheduler

    @property
    def is_leader(self) -> bool:
        """True while this process runs the programme's jobs."""
        return self.lock.is_leader

    async def start(self) -> None:
        """Open the job store and compete for leadership (returns without waiting to lead).

        Does nothing when ``enabled`` is false. Raises if the database cannot be reached.
        """
        if not self.config.enabled:
            log.info("scheduler disabled")
            return
        if self._scheduler is not None:
            return
        scheduler = AsyncIOScheduler(
            jobstores={"default": create_jobstore(self._database_url)},
            executors={"default": RunExecutor(self._runs)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.config.misfire_grace_seconds,
            },
            timezone=self._zone,
        )
        scheduler.start(paused=True)
        self._scheduler = scheduler
        await self.lock.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="scheduler heartbeat")

    async def stop(self) -> None:
        """Stop leading (cancelling runs in progress), release the lock, close the store."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self.lock.stop()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
            # AsyncIOScheduler shuts down on the next loop iteration; let it close the store.
            for _ in range(100):
                if not scheduler.running:
                    break
                await asyncio.sleep(0)

    async def __aenter__(self) -> ProgrammeScheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _lead(self) -> None:
        """On gaining the lock: bring the store's jobs in line with the config, then resume."""
        scheduler = self.scheduler
        stored = {job.id: job for job in scheduler.get_jobs()}
        for name, trigger in self._triggers.items():
            previous = stored.pop(name, None)
            same = (
                previous is not None
                and previous.func_ref == _RUN_JOB_REF
                and tuple(previous.args) == (name,)
                and repr(previous.trigger) == repr(trigger)
            )
            # Keep a due-but-unrun period (or a paused job) rather than skip to the next one.
            keep = {"next_run_time": previous.next_run_time} if previous and same else {}
            scheduler.add_job(
                run_job,
                trigger,
                args=[name],
                id=name,
                name=name,
                replace_existing=True,
                **keep,
            )
        for name in stored:
            scheduler.remove_job(name)
            log.info("job no longer scheduled", extra={"job": name})
        scheduler.resume()
        log.info("scheduler leading", extra={"jobs": ",".join(sorted(self._triggers))})

    def _follow(self) -> None:
        """On losing the lock: stop processing and running jobs at once."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
        cancelled = self._runs.cancel_all()
        log.info("scheduler following", extra={"cancelled_runs": cancelled})

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT_SECONDS)
            if self.lock.is_leader and self._scheduler is not None:
                self._scheduler.wakeup()
