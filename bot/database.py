"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) in production."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.util import await_

from bot.sqlite_reader import inline_reader
from models.base import AFTER_POINTS_COMMIT
from models.ledger import POINTS_CHANGED

# WAL lets the webhook read while a flush writes; NORMAL sync is durable across app crashes.
_TUNING = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON")


def _pragmas(dbapi_connection: Any, pragmas: tuple[str, ...]) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    _pragmas(dbapi_connection, _TUNING)


def _tune_reader(dbapi_connection: Any, _record: Any) -> None:
    # query_only: a write sent to the reader fails at once rather than holding the event loop.
    _pragmas(dbapi_connection, (*_TUNING, "query_only=ON"))


def _roll_back_only_what_is_open(engine: AsyncEngine) -> None:
    """Send a rollback to aiosqlite only when the connection has a transaction open.

    SQLAlchemy rolls back every connection that closes or goes back to the pool. SQLite starts
    no transaction for a SELECT, so after a read (most of the webhook's statements) there is
    nothing to roll back: sqlite3 would skip the ROLLBACK itself, after a hop to the thread and
    back that was one of the five a read cost (on the inline reader, no hop, but still a pass
    through SQLAlchemy's async adaptation for nothing). ``in_transaction`` is sqlite3's own
    flag."""
    dialect = engine.sync_engine.dialect
    roll_back = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            idle = not dbapi_connection.driver_connection.in_transaction
        except Exception:  # noqa: BLE001 - closed or broken: let the rollback find out
            idle = False
        if not idle:
            roll_back(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


_HOLDS = "sqlite_writer"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class SQLiteWriters:
    """One writing transaction at a time per engine, in arrival order.

    SQLite has one write lock per database. A transaction that finds it taken sleeps in
    SQLite's busy handler (1, 2, 5, 10 … 100 ms steps) and tries again, however soon the lock
    frees: under the webhook's mixed load, first messages' inserts and the interaction flush
    slept through each other's commits into tails of several hundred milliseconds (max 259 to
    1,022 ms in bench/peers.py's mixed load; 87 with this). Here a connection's first write of
    a transaction waits on an asyncio lock instead, in arrival order, woken when the writer
    before it commits or rolls back. SQLAlchemy tells of a commit just before sending it, so
    the next writer may still meet SQLite's lock for the busy handler's first millisecond.
    Reads never wait (WAL). Another process writing to the same file is met by the busy handler
    as before.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        """``timeout``: as SQLite's ``busy_timeout``; past it the write fails as SQLite would."""
        self._lock = asyncio.Lock()
        self._timeout = timeout
        # Transactions waiting for their turn to write (for tests and curiosity).
        self.waiting = 0

    def watch(self, engine: AsyncEngine) -> None:
        """Hold ``engine``'s writing transactions to one at a time."""
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before_execute)
        event.listen(sync, "commit", self._release)
        event.listen(sync, "rollback", self._release)
        # A connection back in the pool (the pool's own reset rolls back without the events
        # above) or thrown away holds nothing either.
        event.listen(sync.pool, "checkin", self._released_record)
        event.listen(sync.pool, "invalidate", self._released_record)

    def _before_execute(self, conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if conn.info.get(_HOLDS) or not statement.lstrip()[:7].upper().startswith(_WRITES):
            return
        if not await_(self._acquire()):
            raise OperationalError(statement, None, sqlite3.OperationalError("database is locked"))
        conn.info[_HOLDS] = True

    async def _acquire(self) -> bool:
        # Lock.acquire gives the lock up if it is cancelled at the moment it is granted, so
        # the timeout cannot leave it held by nobody.
        self.waiting += 1
        try:
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
        return True

    def _release(self, conn: Connection) -> None:
        if conn.info.pop(_HOLDS, False):
            self._lock.release()

    def _released_record(self, _dbapi: Any, record: Any, *_: Any) -> None:
        if record is not None and record.info.pop(_HOLDS, False):
            self._lock.release()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for the configured URL; creates the SQLite file's folder if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Pool sizes are for PostgreSQL; SQLite's pool is sized by SQLAlchemy's defaults.
        kwargs.pop("pool_size", None)
        kwargs.pop("max_overflow", None)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        _roll_back_only_what_is_open(engine)
        SQLiteWriters().watch(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # The connection used last is the one handed out next: under light or grouped load the
    # same few connections serve, their PostgreSQL backends' plans (PL/pgSQL plans a function
    # per connection on first call) and asyncpg's prepared statements warm; FIFO passed every
    # request to the next of the pool's (32 by default), and each first call on a cold one held
    # up its whole group (bench/README.md, redemption: the first 400 confirmations at p50
    # 60-70 ms instead of 25).
    kwargs.setdefault("pool_use_lifo", True)
    # No pre-ping: it costs a round trip per checkout; a connection found dead fails its
    # request once and the pool replaces it.
    return create_async_engine(url, **kwargs)


def create_reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine handlers' read-only answers use. On PostgreSQL, ``engine`` in autocommit,
    which spares a BEGIN and a COMMIT round trip per answer. On a SQLite file, an engine of its
    own whose reads run on the event loop's thread (bot/sqlite_reader.py says why), its
    connections read-only; the caller disposes of it (``dispose_reader``)."""
    if engine.dialect.name != "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    if engine.url.database in (None, "", ":memory:"):
        return engine  # a memory database is one connection's: nothing to share
    reader = inline_reader(engine)
    event.listen(reader.sync_engine, "connect", _tune_reader)
    _roll_back_only_what_is_open(reader)
    return reader


async def dispose_reader(reader: AsyncEngine, engine: AsyncEngine) -> None:
    """Close the reader's connections if it has its own (``create_reader``)."""
    if reader.sync_engine.pool is not engine.sync_engine.pool:
        await reader.dispose()


class BotSession(Session):
    """The service's sessions: they report committed points changes (``create_sessionmaker``)."""


@event.listens_for(BotSession, "after_commit")
def _report_points_changes(session: Session) -> None:
    changed = session.info.pop(POINTS_CHANGED, None)
    report = session.info.get(AFTER_POINTS_COMMIT)
    if changed and report is not None:
        report(changed)


@event.listens_for(BotSession, "after_rollback")
def _drop_points_changes(session: Session) -> None:
    session.info.pop(POINTS_CHANGED, None)


def create_sessionmaker(
    engine: AsyncEngine, after_points_commit: Callable[[set[int]], None] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (handlers read them afterwards).

    ``after_points_commit`` is called with the ids of the members whose points a committed
    transaction moved (the points cache forgets them).
    """
    info = {AFTER_POINTS_COMMIT: after_points_commit} if after_points_commit else {}
    return async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=BotSession, info=info
    )
