"""Small programme-wide values computed by jobs (e.g. the top-spender threshold)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class ProgrammeState(Base):
    __tablename__ = "programme_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


async def get_state(session: AsyncSession, key: str) -> Any:
    """The stored value for ``key``, or None."""
    return await session.scalar(select(ProgrammeState.value).where(ProgrammeState.key == key))


async def set_state(session: AsyncSession, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` (in the caller's transaction)."""
    await session.merge(ProgrammeState(key=key, value=value))
