"""Background tasks the app owns: tracked, so shutdown can finish or cancel them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Started(Generic[T]):
    """What ``start_eagerly`` left: the coroutine's outcome if it finished at once (``task``
    None: ``result()`` gives it, or raises its error), else the task carrying it on."""

    __slots__ = ("_error", "_value", "task")

    def __init__(
        self,
        task: asyncio.Task[T] | None,
        value: T | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.task, self._value, self._error = task, value, error

    def result(self) -> T:
        """The coroutine's return value (or its error raised), once it has finished."""
        if self.task is not None:
            return self.task.result()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def start_eagerly(coro: Coroutine[Any, Any, T]) -> Started[T]:
    """Run ``coro`` at once, up to its first wait, as Python 3.12's eager tasks do; a task
    carries it on from there if it has to wait. A coroutine that needs no I/O (积分 answered
    from the points cache) then costs no task and no pass of the event loop: about 7 µs a
    message on the webhook's hot path. Its first step runs in the caller's context."""
    try:
        blocked_on = coro.send(None)
    except StopIteration as done:
        return Started(None, value=done.value)
    except Exception as exc:  # noqa: BLE001 - the caller's to see, as from a task's result()
        return Started(None, error=exc)
    return Started(asyncio.get_running_loop().create_task(_carry_on(coro, blocked_on)))


async def _carry_on(coro: Coroutine[Any, Any, T], blocked_on: Any) -> T:
    return await _Resumed(coro, blocked_on)


class _Resumed(Awaitable[T]):
    """A started coroutine, awaited from where it stopped: the task awaiting this is handed
    what the coroutine waits on, and sends, or throws (a cancellation), into it."""

    __slots__ = ("_blocked_on", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, T], blocked_on: Any) -> None:
        self._coro, self._blocked_on = coro, blocked_on

    def __await__(self) -> Generator[Any, Any, T]:
        coro, message = self._coro, self._blocked_on
        while True:
            try:
                received = yield message
            except BaseException as exc:  # noqa: BLE001 - passed on to the coroutine
                try:
                    message = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    message = coro.send(received)
                except StopIteration as done:
                    return done.value


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
