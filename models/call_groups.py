"""Group commit for the database: calls of one key that arrive while a call of that key is on
its way go together as the next call.

The first call goes at once, so nothing waits when it is quiet; under load a group pays one
round trip, one statement and one commit for all its members. A caller cancelled before its
group is sent is left out; once sent, what it asked for stands (as a statement already sent
would). Used for the chat's redemptions of one item (models/redemption_groups.py) and for
first messages' members (models/new_members.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

# One group's answers, in its members' order: each an answer or the exception its caller raises.
Send = Callable[[K, list[V]], Awaitable[list[R | Exception]]]


@dataclass
class _Waiting(Generic[V, R]):
    value: V
    answer: asyncio.Future[R]


@dataclass
class _Key(Generic[V, R]):
    waiting: list[_Waiting[V, R]] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None


class CallGroups(Generic[K, V, R]):
    """Calls grouped per key, at most ``size`` a group; ``send`` makes one group's call."""

    def __init__(self, send: Send[K, V, R], size: int) -> None:
        self._send_group = send
        self._size = size
        self._keys: dict[K, _Key[V, R]] = {}

    async def call(self, key: K, value: V) -> R:
        """``value``'s answer from the group it went in (its exception, if that is the answer;
        the group's, if the whole call failed)."""
        waiting: _Waiting[V, R] = _Waiting(value, asyncio.get_running_loop().create_future())
        state = self._keys.setdefault(key, _Key())
        state.waiting.append(waiting)
        if state.sending is None:
            state.sending = asyncio.create_task(self._send(key, state))
        return await waiting.answer

    async def close(self) -> None:
        """Wait for every group on its way (their members are answered)."""
        sending = [state.sending for state in self._keys.values() if state.sending is not None]
        await asyncio.gather(*sending, return_exceptions=True)

    async def _send(self, key: K, state: _Key[V, R]) -> None:
        try:
            while state.waiting:
                group = [w for w in state.waiting[: self._size] if not w.answer.done()]
                del state.waiting[: self._size]
                if group:
                    await self._send_one(key, group)
        finally:
            # Cancelled (the process stopping): nobody is left waiting for an answer.
            for waiting in state.waiting:
                waiting.answer.cancel()
            state.waiting.clear()
            state.sending = None
            if self._keys.get(key) is state:
                del self._keys[key]

    async def _send_one(self, key: K, group: list[_Waiting[V, R]]) -> None:
        try:
            answers = await self._send_group(key, [w.value for w in group])
        except Exception as error:  # noqa: BLE001 - each caller raises it
            answers = [error] * len(group)
        except BaseException:
            for waiting in group:
                waiting.answer.cancel()
            raise
        for waiting, answer in zip(group, answers, strict=True):
            if waiting.answer.done():  # the caller was cancelled meanwhile: its call stands
                continue
            if isinstance(answer, Exception):
                waiting.answer.set_exception(answer)
            else:
                waiting.answer.set_result(answer)
