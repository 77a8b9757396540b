"""Coupons (券): issued to a member from a configured kind, redeemed once by the shop."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

STATUSES = ("issued", "redeemed", "expired")


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_member_id_status", "member_id", "status"),
        Index(
            "ix_coupons_valid_until_issued",
            "valid_until",
            postgresql_where=text("status = 'issued'"),
            sqlite_where=text("status = 'issued'"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(8), default="issued")
    reason: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shop_order_id: Mapped[str | None] = mapped_column(String(64))
