"""Binding a follower to a shop customer with a one-time code (never on a phone number)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

# No 0/O, 1/I/L: the member types the code from a receipt.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


class BindingCode(Base):
    __tablename__ = "binding_codes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(16), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by_openid: Mapped[str | None] = mapped_column(String(64))


def new_code() -> str:
    """A random code of 8 unambiguous characters (about 10^11.9 possibilities)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def expiry(now: datetime, hours: int) -> datetime:
    return now + timedelta(hours=hours)
