"""The schema comes only from migrations: after `upgrade head` it must match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.database import create_engine
from bot.migrate import include_name
from models import Base


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"include_name": include_name}),
                Base.metadata,
            )
        )
    await engine.dispose()
    assert diff == []
