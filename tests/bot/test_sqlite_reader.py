"""bot/sqlite_reader.py through bot/database.py's ``create_reader``: the handlers' SQLite reads
run on the event loop's thread, see what the writers committed, and refuse to write."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.database import create_engine, create_reader, dispose_reader
from tests.helpers import add_who, make_scratch_table, whos


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/reader.db")
    await make_scratch_table(engine)
    await add_who(engine, "first")
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
    await add_who(engine, "second")
    assert await whos(reader) == ["first", "second"]


async def test_a_write_through_the_reader_fails_and_changes_nothing(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    _, reader = engines
    with pytest.raises(OperationalError, match="readonly"):
        async with reader.begin() as conn:
            await conn.execute(text("INSERT INTO t (who) VALUES ('sneaked')"))
    assert await whos(reader) == ["first"]


async def test_a_heavy_read_is_stopped_at_its_cpu_limit_and_the_reader_goes_on(
    engines: tuple[AsyncEngine, AsyncEngine], caplog: pytest.LogCaptureFixture
) -> None:
    _, reader = engines
    # A hundred million rows: minutes of the event loop's thread, were it let run.
    heavy = text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
        "SELECT count(*) FROM c"
    )
    with pytest.raises(OperationalError, match="interrupted"):
        async with reader.connect() as conn:
            await conn.execute(heavy)
    assert "belongs on a thread" in caplog.text
    assert await whos(reader) == ["first"]
