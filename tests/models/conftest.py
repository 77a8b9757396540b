"""Fixtures of the domain's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from models import Base


@pytest.fixture
async def pg_sessions(postgresql_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """PostgreSQL only, on an emptied schema: the tests of real row locks between sessions
    (SQLite lets one writer at a time hold the whole database). Sixty connections: the
    races run fifty sessions at once."""
    engine = create_engine(postgresql_url, pool_size=60)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(text(f"DELETE FROM {table.name}"))
    yield create_sessionmaker(engine)
    await engine.dispose()
