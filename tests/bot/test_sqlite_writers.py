"""bot/database.py on SQLite: one writing transaction at a time, in arrival order
(SQLiteWriters), and rollbacks only of what is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.database import SQLiteWriters, _tune_sqlite, create_engine
from tests.helpers import add_who, make_scratch_table, whos


@pytest.fixture
async def writers(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, SQLiteWriters]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/writers.db")
    event.listen(engine.sync_engine, "connect", _tune_sqlite)
    watcher = SQLiteWriters(timeout=2.0)
    watcher.watch(engine)
    await make_scratch_table(engine)
    try:
        yield engine, watcher
    finally:
        await engine.dispose()


async def _until_waiting(watcher: SQLiteWriters, n: int) -> None:
    """Until ``n`` writers wait on the watcher's lock (a writer waiting inside SQLite's busy
    handler never counts: then this fails after 30 s)."""
    async with asyncio.timeout(30):
        while watcher.waiting < n:  # noqa: ASYNC110 - the watcher has no event to wait on
            await asyncio.sleep(0)


async def test_writers_queue_behind_the_one_writing_and_commit_in_arrival_order(
    writers: tuple[AsyncEngine, SQLiteWriters],
) -> None:
    engine, watcher = writers
    async with engine.connect() as first:
        await first.execute(text("INSERT INTO t (who) VALUES ('first')"))
        queued = []
        for n, who in enumerate(("second", "third", "fourth"), start=1):
            queued.append(asyncio.create_task(add_who(engine, who)))
            await _until_waiting(watcher, n)  # each waits on the lock, not in SQLite
        assert not any(task.done() for task in queued)
        # A read is not held up by the writers (WAL): it sees what is committed.
        assert await whos(engine) == []
        await first.commit()
    await asyncio.gather(*queued)
    assert await whos(engine) == ["first", "second", "third", "fourth"]
    assert watcher.waiting == 0


@pytest.mark.parametrize("end", ["rollback", "close"])
async def test_a_writer_that_gives_up_lets_the_next_one_write(
    writers: tuple[AsyncEngine, SQLiteWriters], end: str
) -> None:
    engine, watcher = writers
    conn = await engine.connect()
    await conn.execute(text("INSERT INTO t (who) VALUES ('undone')"))
    waiting = asyncio.create_task(add_who(engine, "next"))
    await _until_waiting(watcher, 1)
    if end == "rollback":
        await conn.rollback()
    await conn.close()  # back to the pool: its reset rolls back what was left open
    await waiting
    assert await whos(engine) == ["next"]


async def test_a_writer_waiting_too_long_fails_as_sqlite_would_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/timeout.db")
    event.listen(engine.sync_engine, "connect", _tune_sqlite)
    watcher = SQLiteWriters(timeout=0.2)
    watcher.watch(engine)
    try:
        await make_scratch_table(engine)
        async with engine.connect() as holder:
            await holder.execute(text("INSERT INTO t (who) VALUES ('holder')"))
            with pytest.raises(OperationalError, match="database is locked"):
                await add_who(engine, "late")
            await holder.commit()
        await add_who(engine, "after")
        assert await whos(engine) == ["holder", "after"]
    finally:
        await engine.dispose()


async def test_a_read_sends_no_rollback_and_an_open_write_is_still_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bot/database.py rolls back only what is open: a read's connection goes back to the pool
    without a rollback sent to aiosqlite's thread; a write left uncommitted is undone."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/reads.db")
    sent: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", ""))
        return await execute(self, fn, *args, **kwargs)

    try:
        await make_scratch_table(engine)
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT count(*) FROM t"))
        assert "rollback" not in sent
        async with engine.connect() as conn:
            await conn.execute(text("INSERT INTO t (who) VALUES ('left open')"))
        assert sent[-1] == "rollback"
        assert await whos(engine) == []
    finally:
        await engine.dispose()
