"""Declarative base with a naming convention, so Alembic migrations name constraints stably."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData, TypeDecorator, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import greenlet_spawn

# The sessionmaker's info key (bot/database.py): called with the members whose points a
# committed transaction moved, so the points cache forgets them.
AFTER_POINTS_COMMIT = "after_points_commit"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC time is stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT construct of the session's database, for ON CONFLICT clauses."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def local_period(session: AsyncSession, column: Any, start: datetime, unit: str) -> Any:
    """``column`` (a UTC time) as the local ``day`` or ``month`` it falls in, as text
    (2026-11-23, 2026-11), in SQL. The zone is ``start``'s offset: the programme's zone,
    Asia/Shanghai, keeps one all year."""
    hours = int((start.utcoffset() or timedelta()).total_seconds() // 3600)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    if dialect == "postgresql":
        shifted = column + func.make_interval(0, 0, 0, 0, hours)
        return func.to_char(shifted, "YYYY-MM-DD" if unit == "day" else "YYYY-MM")
    return func.strftime("%Y-%m-%d" if unit == "day" else "%Y-%m", column, f"{hours:+d} hours")


@asynccontextmanager
async def on_its_own(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for work that is one statement, or statements each whole by itself: on
    PostgreSQL in autocommit (no BEGIN or COMMIT round trip, and no lock held past the
    statement that took it); on SQLite an ordinary transaction. Committed on leaving (which
    tells the points cache, as every commit does), rolled back on an error."""
    async with sessions() as session:
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
        await session.commit()


def on_postgresql(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether ``sessions`` open PostgreSQL sessions."""
    bind = sessions.kw.get("bind")
    return bind is not None and bind.dialect.name == "postgresql"


@asynccontextmanager
async def driver_on_its_own(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    """PostgreSQL only: a pooled connection's own asyncpg connection, for a statement that is
    whole by itself (asyncpg runs it in autocommit: no BEGIN or COMMIT round trip, no lock held
    past it). For the hottest calls only: a session and SQLAlchemy's statement layer cost the
    web process about three times the CPU of the call itself (bench/README.md, redemption).

    A connection that failed or was cancelled mid-statement is dropped, not pooled again (a
    PostgreSQL error, such as a violated constraint, leaves it usable). Nothing here tells the
    points cache: call ``points_committed`` for what the statement changed."""
    bind = sessions.kw["bind"]
    pooled = await bind.raw_connection()
    try:
        yield pooled.driver_connection
    except asyncpg.PostgresError:
        raise
    except BaseException:
        await greenlet_spawn(pooled.invalidate)
        raise
    finally:
        await greenlet_spawn(pooled.close)


def points_committed(sessions: async_sessionmaker[AsyncSession], member_ids: Iterable[int]) -> None:
    """Tell the points cache that a statement committed outside a session (``driver_on_its_own``)
    moved these members' points, as a session's commit does by itself."""
    report = sessions.kw.get("info", {}).get(AFTER_POINTS_COMMIT)
    if report is not None:
        report(set(member_ids))


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
