"""SQLite reads on the event loop's own thread, for the webhook's handlers.

aiosqlite runs each call on a thread of the connection's own: a handler's read costs four
hops there and back (checkout, execute, fetch, release), each a queue, a wake-up of the other
thread, the GIL handed over and back, and a wake-up of the event loop. On one core, the mixed
load of bench/peers.py spent about 1.1 ms of CPU a request (6.7 involuntary context switches);
a third of it went when the reads stopped hopping. Here the same calls run where they are
awaited: a read blocks the event loop for as long as SQLite takes to answer it, which for a
member's indexed rows is less than one hop. In WAL mode a reader waits for no writer, so
nothing here waits on a lock.

Only for reads: the connections are ``query_only``, so a write sent here by mistake fails at
once instead of holding the loop while it waits its turn. Writes keep aiosqlite's threads (and
bot/database.py's ``SQLiteWriters``). Only for short reads: SQLite stops a call that has used
``CALL_LIMIT`` of CPU, so a heavy query routed here by mistake fails loudly instead of holding
every member's answer behind it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

# CPU seconds one call may hold the event loop's thread. A member's indexed rows take well
# under a millisecond; a call near this was routed here by mistake and belongs on a thread.
CALL_LIMIT = 0.1
# SQLite's virtual-machine steps between looks at the clock (a short read takes fewer).
_STEPS = 10_000


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection with every call made at once on the caller's thread: no worker
    thread is started."""

    # thread_time() past which the running call is stopped; set at SQLite's first look, so a
    # short read (fewer steps than one look) does not pay for the clock (a system call).
    _deadline: float | None = None

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        self._deadline = None
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                log.error("inline SQLite read stopped at its CPU limit; it belongs on a thread")
            raise

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._open().__await__()

    async def _open(self) -> aiosqlite.Connection:
        if self._connection is None:
            self._connection = self._connector()
            self._connection.set_progress_handler(self._over_limit, _STEPS)
        return self

    def _over_limit(self) -> bool:
        # Thread time, not wall time: being preempted on a busy machine uses none of it.
        now = time.thread_time()
        if self._deadline is None:
            self._deadline = now + CALL_LIMIT
        return now > self._deadline

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (aiosqlite's stops its thread, which never ran here)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._running = False


def inline_reader(engine: AsyncEngine) -> AsyncEngine:
    """An engine on ``engine``'s SQLite file (not a memory database: that is one connection's)
    whose connections read on the event loop's thread; see the module's docstring."""
    database = engine.url.database

    async def connect() -> aiosqlite.Connection:
        # Made and used on the loop's thread, so sqlite3's own thread check holds.
        return await _InlineConnection(lambda: sqlite3.connect(database), iter_chunk_size=64)

    return create_async_engine(engine.url, async_creator=connect)
