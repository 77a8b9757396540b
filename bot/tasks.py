"""Background tasks the app owns: tracked, so shutdown can finish or cancel them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    """A set of running tasks that outlive the request that started them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; its failure is logged, never lost silently."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task failed", exc_info=task.exception(), extra={"task": task.get_name()}
            )

    async def close(self, grace: float = 5.0) -> None:
        """Let running tasks finish for ``grace`` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def every(
    interval: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop`` is set, then once more. Errors
    are logged and retried next time. The loop is stopped, never cancelled: cancelling a task
    mid-statement can leave its database connection hanging when the pool closes."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        try:
            await work()
        except Exception:
            log.exception(f"{what} failed; will retry")
