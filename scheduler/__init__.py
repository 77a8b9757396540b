"""The programme's clock: the scheduler machinery and every job with what it plans.
May import bot.push, bot.wechat, messages and models; never the API, the console, the pages, the
app factory or the composed config.

- ``scheduler.settings.SchedulerConfig``: the ``[scheduler]`` settings (jobs as crontabs).
- ``scheduler.leader.LeaderLock``: leadership held in Redis with a TTL.
- ``scheduler.runner.ProgrammeScheduler``: APScheduler over a persistent job store, leading or
  paused.
- ``scheduler.jobs``: the jobs table; ``scheduled_pushes``, ``recap_push``,
  ``rating_questions`` and ``campaigns``: what the jobs plan.

Nothing is imported here, so ``bot.config`` can import ``scheduler.settings`` without pulling in
APScheduler's runtime or Redis.
"""
