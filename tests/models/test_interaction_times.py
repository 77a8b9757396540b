"""Members' last-interaction times move from the flush's batch to the database in one statement
(models/members.py ``record_interactions``), forward only, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.members import Member, create_members, record_interactions

JOINED = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 15, 4, 0, 7, 250000, tzinfo=UTC)


async def _times(sessions: async_sessionmaker[AsyncSession]) -> dict[str, datetime | None]:
    async with sessions() as session:
        rows = await session.execute(select(Member.openid, Member.last_interaction_at))
        return {openid: at for openid, at in rows}


async def _member(sessions: async_sessionmaker[AsyncSession], openid: str, at: datetime | None):
    async with sessions() as session:
        await create_members(session, {openid: JOINED})
        await session.execute(
            Member.__table__.update().where(Member.openid == openid).values(last_interaction_at=at)
        )
        await session.commit()


async def test_times_move_forward_only_and_unknown_openids_change_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    later = NOW + timedelta(days=1)
    await _member(sessions, "o_never_000001", None)
    await _member(sessions, "o_older_000001", NOW - timedelta(hours=3))
    await _member(sessions, "o_newer_000001", later)
    batch = {
        "o_never_000001": NOW.timestamp(),
        "o_older_000001": NOW.timestamp(),
        "o_newer_000001": NOW.timestamp(),
        "o_stranger_001": NOW.timestamp(),
    }
    async with sessions() as session:
        moved = await record_interactions(session, batch)
        await session.commit()
    assert moved == 2
    times = await _times(sessions)
    assert times == {"o_never_000001": NOW, "o_older_000001": NOW, "o_newer_000001": later}
    # Read back through the model, the stored time is the batch's to the microsecond, and a
    # later flush of an earlier time (another process's, arriving late) moves nothing.
    async with sessions() as session:
        assert await record_interactions(session, {"o_older_000001": NOW.timestamp() - 1}) == 0
        await session.commit()
    assert (await _times(sessions))["o_older_000001"] == NOW


async def test_a_batch_of_thousands_is_written_whole(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    openids = [f"o_batch_{i:06d}" for i in range(3000)]
    async with sessions() as session:
        await create_members(session, dict.fromkeys(openids, JOINED))
        await session.commit()
    batch = {openid: NOW.timestamp() + i for i, openid in enumerate(openids)}
    async with sessions() as session:
        assert await record_interactions(session, batch) == 3000
        await session.commit()
    times = await _times(sessions)
    assert times["o_batch_000000"] == NOW
    assert times["o_batch_002999"] == NOW + timedelta(seconds=2999)
    assert all(times[openid] is not None for openid in openids)


async def test_an_empty_batch_writes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await record_interactions(session, {}) == 0
