"""APScheduler's job store in the service's database, over a synchronous engine.

APScheduler 3's ``SQLAlchemyJobStore`` is synchronous: it gets the sync form of the service's
(async) database URL. Its queries are a few indexed rows, run on the leader when a job is due,
so they are made on the event loop rather than in a thread.
"""

from __future__ import annotations

from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

TABLE = "apscheduler_jobs"

_SYNC_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def sync_database_url(url: str) -> str:
    """The synchronous form of a database URL (``sqlite:///…``, ``postgresql+psycopg://…``)."""
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"unsupported database {parsed.drivername!r} (use sqlite or postgresql)")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    # The service writes the same file; wait for its transactions rather than fail at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_sync_engine(url: str) -> Engine:
    """A small synchronous engine for the job store, on the sync form of ``url``."""
    sync_url = sync_database_url(url)
    if make_url(sync_url).get_backend_name() == "sqlite":
        engine = create_engine(sync_url)
        event.listen(engine, "connect", _sqlite_busy_timeout)
        return engine
    # The store's queries block the event loop: never for long on an unreachable server.
    return create_engine(
        sync_url,
        pool_size=1,
        max_overflow=1,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def create_jobstore(url: str) -> SQLAlchemyJobStore:
    """The persistent job store (table ``apscheduler_jobs``), its table created if missing.

    The table is created here, once, with a retry: two processes starting together on an
    empty database may both try to create it, and PostgreSQL fails the slower one.
    """
    engine = create_sync_engine(url)
    store = SQLAlchemyJobStore(engine=engine, tablename=TABLE)
    try:
        store.jobs_t.create(engine, checkfirst=True)
    except DBAPIError:
        store.jobs_t.create(engine, checkfirst=True)
    return store
