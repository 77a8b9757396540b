"""One run of a programme job, and how a persisted job finds the live objects it needs.

APScheduler's persistent store keeps each job as a reference to an importable function plus
pickled arguments, so a stored job can carry only its name. The database sessions, the rules
and the leader lock are live objects: they live in a ``JobRuns`` owned by the running
``ProgrammeScheduler``. Its executor (``RunExecutor``) sets a context variable while it creates
each run's task; the task copies the context, and ``run_job`` reads its ``JobRuns`` from there.
So there is no module-level slot to set and clear, and two schedulers in one process (as in
the tests) each run their own jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.push.outbox import Outbox
from models.rules import ProgrammeRules
from scheduler.jobs import Job, JobContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Submission:
    runs: JobRuns
    scheduled: datetime


_SUBMISSION: ContextVar[_Submission] = ContextVar("scheduler_submission")


class JobRuns:
    """Runs programme jobs for one scheduler: only while leading, once per scheduled time.

    Each run is claimed in Redis under its job and scheduled time before it starts. The leader
    lock already keeps other processes from running jobs; the claim also covers the moment a
    leadership change falls between APScheduler picking a job and the job starting.
    """

    def __init__(
        self,
        *,
        jobs: Mapping[str, Job],
        sessions: async_sessionmaker[AsyncSession],
        rules: ProgrammeRules,
        redis: Redis,
        is_leader: Callable[[], bool],
        claim_prefix: str,
        claim_seconds: int,
    ) -> None:
        self.jobs = jobs
        self._sessions = sessions
        self._rules = rules
        self._redis = redis
        self._is_leader = is_leader
        self._claim_prefix = claim_prefix
        self._claim_seconds = claim_seconds
        self._running: set[asyncio.Future[str]] = set()

    async def run(self, name: str, scheduled: datetime) -> str:
        """Run job ``name`` for the period scheduled at ``scheduled``; its outcome, logged.

        The job is given the scheduled time as ``now``: a run late by a leader change or a
        restart does the same work as an on-time one, so each period's run is reproducible.
        """
        started = time.perf_counter()
        outcome, ran = await self._run(name, scheduled)
        log.log(
            logging.INFO if ran else logging.WARNING,
            "job run",
            extra={
                "job": name,
                "outcome": outcome,
                "seconds": round(time.perf_counter() - started, 3),
                "scheduled": scheduled.isoformat(),
            },
        )
        return outcome

    def cancel_all(self) -> int:
        """Cancel the runs in progress (leadership was lost); how many there were."""
        for task in self._running:
            task.cancel()
        return len(self._running)

    async def _run(self, name: str, scheduled: datetime) -> tuple[str, bool]:
        """The outcome, and whether the job ran to completion."""
        job = self.jobs.get(name)
        if job is None:
            return "skipped: no such job in this version", False
        if not self._is_leader():
            return "skipped: not the leader", False
        claim = f"{self._claim_prefix}:{name}:{int(scheduled.timestamp())}"
        try:
            claimed = await self._redis.set(claim, "1", nx=True, ex=self._claim_seconds)
        except (RedisError, OSError) as exc:
            return f"skipped: could not claim the run ({exc!r})", False
        if not claimed:
            return "skipped: this period already ran", False
        # A task of its own, so a lost leadership can cancel the job and still log the run.
        now = scheduled.astimezone(UTC)
        context = JobContext(self._sessions, self._rules, Outbox(self._redis), now)
        task = asyncio.ensure_future(job.run(context))
        self._running.add(task)
        try:
            return await task, True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the scheduler is shutting down: let the cancellation through
            return "cancelled: leadership lost", False
        except Exception as exc:
            log.exception("job failed", extra={"job": name})
            return f"failed: {exc!r}", False
        finally:
            self._running.discard(task)


async def run_job(name: str) -> str | None:
    """Run programme job ``name``: the function every persisted job refers to.

    Called by APScheduler in a task created by ``RunExecutor``; returns the outcome.
    """
    submission = _SUBMISSION.get(None)
    if submission is None:
        log.error("job run outside a programme scheduler: skipped", extra={"job": name})
        return None
    return await submission.runs.run(name, submission.scheduled)


class RunExecutor(AsyncIOExecutor):
    """APScheduler's asyncio executor, handing each run its ``JobRuns`` and scheduled time."""

    def __init__(self, runs: JobRuns) -> None:
        super().__init__()
        self.runs = runs

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        # Jobs coalesce, so run_times holds one time: the latest that was due.
        token = _SUBMISSION.set(_Submission(self.runs, run_times[-1]))
        try:
            super()._do_submit_job(job, run_times)  # creates the task, which copies the context
        finally:
            _SUBMISSION.reset(token)
