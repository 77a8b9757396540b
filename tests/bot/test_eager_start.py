"""``start_eagerly`` (bot/tasks.py): a coroutine run at once up to its first wait, carried on by
a task from there, with the same outcomes as a task made for it."""

from __future__ import annotations

import asyncio

import pytest

from bot.tasks import start_eagerly


async def test_a_coroutine_that_never_waits_finishes_with_no_task() -> None:
    steps: list[str] = []

    async def answer() -> str:
        steps.append("ran")
        return "积分：120"

    started = start_eagerly(answer())
    assert steps == ["ran"]  # before this coroutine gave the event loop a pass
    assert started.task is None
    assert started.result() == "积分：120"


async def test_an_error_before_any_wait_is_raised_by_result() -> None:
    async def fail() -> None:
        raise LookupError("no such member")

    started = start_eagerly(fail())
    assert started.task is None
    with pytest.raises(LookupError, match="no such member"):
        started.result()


async def test_a_coroutine_that_waits_is_carried_on_by_a_task() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[int] = loop.create_future()
    steps: list[str] = []

    async def slow() -> int:
        steps.append("first step")
        await asyncio.sleep(0)  # a bare yield, as asyncio.sleep(0) gives the task
        value = await gate
        steps.append("after the wait")
        return value * 2

    started = start_eagerly(slow())
    assert steps == ["first step"]
    assert started.task is not None
    loop.call_later(0.01, gate.set_result, 21)
    assert await started.task == 42
    assert started.result() == 42
    assert steps == ["first step", "after the wait"]


async def test_an_error_after_a_wait_is_the_tasks() -> None:
    async def fail_later() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("late")

    started = start_eagerly(fail_later())
    assert started.task is not None
    with pytest.raises(ValueError, match="late"):
        await started.task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    cleaned_up = asyncio.Event()
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def waits_forever() -> None:
        try:
            await forever
        finally:
            cleaned_up.set()

    started = start_eagerly(waits_forever())
    assert started.task is not None
    await asyncio.sleep(0)
    started.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started.task
    assert cleaned_up.is_set()
    assert forever.cancelled()  # the wait itself was cancelled, as in a task of its own


async def test_an_error_the_coroutine_catches_after_cancellation_ends_it_normally() -> None:
    async def shrugs_off_cancellation() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "stopped cleanly"
        return "slept"

    started = start_eagerly(shrugs_off_cancellation())
    assert started.task is not None
    await asyncio.sleep(0)
    started.task.cancel()
    assert await started.task == "stopped cleanly"
