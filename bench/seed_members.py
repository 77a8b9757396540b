"""Bulk-load N benchmark members (o_bench_0000000 …) into the configured database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bot.config import load_config
from bot.database import create_engine
from models.base import utcnow
from models.members import Member


async def seed(count: int, url: str | None = None) -> None:
    """Insert ``count`` subscribed members in batches of 10,000 (into ``url``, by default the
    configured database)."""
    engine = create_engine(url or load_config().database.url)
    now = utcnow()
    async with engine.begin() as connection:
        for start in range(0, count, 10_000):
            rows = [
                {
                    "openid": f"o_bench_{i:07d}",
                    "subscribed": True,
                    "subscribed_at": now,
                    "created_at": now,
                }
                for i in range(start, min(count, start + 10_000))
            ]
            await connection.execute(insert(Member), rows)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(seed(int(sys.argv[1])))
