"""The programme's periodic jobs on a clock, run by one leader among the scheduler processes.

- ``scheduler.settings.SchedulerConfig``: the ``[scheduler]`` settings (jobs as crontabs).
- ``scheduler.leader.LeaderLock``: leadership held in Redis with a TTL.
- ``scheduler.runner.ProgrammeScheduler``: APScheduler over a persistent job store, leading or
  paused.

Nothing is imported here, so ``bot.config`` can import ``scheduler.settings`` without pulling in
APScheduler's runtime, Redis or the jobs.
"""
