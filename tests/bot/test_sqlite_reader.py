"""bot/sqlite_reader.py through bot/database.py's ``create_reader``: the handlers' SQLite reads
run on the event loop's thread, see what the writers committed, never wait for a writer, and
refuse to write."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.database import create_engine, create_reader, dispose_reader
from tests.helpers import whos


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/reader.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))
        await conn.execute(text("INSERT INTO t (who) VALUES ('first')"))
    reader = create_reader(engine)
    try:
        yield engine, reader
    finally:
        await dispose_reader(reader, engine)
        await engine.dispose()


async def test_reads_run_on_the_loops_thread_and_see_what_was_committed(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reader = engines
    assert reader is not engine
    threads = threading.active_count()
    assert await whos(reader) == ["first"]
    # aiosqlite would have started a thread for the reader's connection.
    assert threading.active_count() == threads
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (who) VALUES ('second')"))
    assert await whos(reader) == ["first", "second"]


async def test_a_read_does_not_wait_for_a_writer_holding_its_transaction_open(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reader = engines
    async with engine.connect() as writer:
        await writer.execute(text("BEGIN IMMEDIATE"))
        await writer.execute(text("INSERT INTO t (who) VALUES ('uncommitted')"))
        # The writer holds SQLite's write lock; the read answers from the last commit at once.
        assert await asyncio.wait_for(whos(reader), timeout=1.0) == ["first"]
        await writer.execute(text("ROLLBACK"))


async def test_a_write_through_the_reader_fails_and_changes_nothing(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    _, reader = engines
    with pytest.raises(OperationalError, match="readonly"):
        async with reader.begin() as conn:
            await conn.execute(text("INSERT INTO t (who) VALUES ('sneaked')"))
    assert await whos(reader) == ["first"]
