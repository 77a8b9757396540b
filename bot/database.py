"""The SQL engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) in production."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from models.base import AFTER_POINTS_COMMIT
from models.ledger import POINTS_CHANGED


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the webhook read while a flush writes; NORMAL sync is durable across app crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
