"""Console staff (agents, marketers, admins) and the audit log of what they did."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
Role = Literal["agent", "marketer", "admin"]
ROLES: tuple[Role, ...] = ("agent", "marketer", "admin")


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # online, away or offline: only online agents are assigned conversations.
    availability: Mapped[str] = mapped_column(String(16), default="offline")
    # Open conversations at most (None: the console's default).
    max_open: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One staff action: who, what, on what, when (never updated, never deleted)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


async def find_staff(session: AsyncSession, username: str) -> Staff | None:
    """The staff account with this username (enabled or not)."""
    return await session.scalar(select(Staff).where(Staff.username == username))


async def audit(
    session: AsyncSession,
    staff_id: int | None,
    action: str,
    at: datetime,
    target: str | None = None,
    **detail: Any,
) -> None:
    """Record a staff action in the caller's transaction (it lands with what it records)."""
    session.add(AuditEntry(staff_id=staff_id, action=action, target=target, detail=detail, at=at))
