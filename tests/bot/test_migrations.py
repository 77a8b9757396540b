"""The schema comes only from migrations: after `upgrade head` it must match the models."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from bot.database import create_engine
from bot.migrate import include_name, upgrade
from models import Base
from models.orders import OrderIn


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


async def test_order_fingerprints_are_recomputed_in_utc(
    tmp_path: Path, request: pytest.FixtureRequest, lane: str
) -> None:
    """0012: an order recorded with its time as +08:00 is recognised when sent again as Z."""
    url = await _fresh_database(request, lane, tmp_path)
    try:
        await asyncio.to_thread(upgrade, url, "0010")
        beijing = datetime(2026, 3, 1, 12, 30, 15, 250_000, timezone(timedelta(hours=8)))
        legacy = json.dumps(["FP-1", 1, 10_000, beijing.isoformat(), "pos", None])
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO members (id, subscribed, points_balance, tier, tags, created_at) "
                    "VALUES (1, true, 0, 'basic', '[]', :at)"
                ),
                {"at": beijing},
            )
            await connection.execute(
                text(
                    "INSERT INTO orders (shop_order_id, member_id, amount_fen, refunded_fen, "
                    "paid_at, channel, points_earned, points_reversed, fingerprint, created_at) "
                    "VALUES ('FP-1', 1, 10000, 0, :at, 'pos', 100, 0, :fp, :at)"
                ),
                {"at": beijing, "fp": hashlib.sha256(legacy.encode()).hexdigest()},
            )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as connection:
            stored = await connection.scalar(text("SELECT fingerprint FROM orders"))
        await engine.dispose()
        assert stored == OrderIn("FP-1", 1, 10_000, beijing.astimezone(UTC), "pos").fingerprint()
    finally:
        await _drop_database(lane, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def lane(request: pytest.FixtureRequest) -> str:
    return request.param


async def _fresh_database(request: pytest.FixtureRequest, lane: str, folder: Path) -> str:
    """An empty database of the lane, for migrating step by step."""
    if lane == "sqlite":
        return f"sqlite+aiosqlite:///{folder}/fresh.db"
    server = request.getfixturevalue("postgresql_url")
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text("CREATE DATABASE fresh_migration"))
    await engine.dispose()
    return server.rsplit("/", 1)[0] + "/fresh_migration"


async def _drop_database(lane: str, url: str) -> None:
    if lane == "sqlite":
        return
    engine = create_engine(url.rsplit("/", 1)[0] + "/bot_test", isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text("DROP DATABASE fresh_migration WITH (FORCE)"))
    await engine.dispose()
