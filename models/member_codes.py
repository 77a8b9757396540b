"""The member code (会员码) a till scans: numeric, rotating every minute, bound to the member.

A code is 18 digits, like the payment codes tills already scan, but in a range of its own
(``98…``; WeChat Pay's start 10-15, Alipay's 25-30): the member's id masked with a per-minute
pad, then a 7-digit tag, both HMACs (SHA-256) of the member and the minute under a server key.
The pad makes codes of different minutes unlinkable; the tag makes a forged code fail (one
guess in 10^7 per minute, behind the API's tokens and rate limit). The code for a minute is
the same however often the page asks, so a reload shows the same code.

A code is live in its minute and ``grace_seconds`` after it (the page shows the next one as
the minute turns, so a code being scanned at that moment still works); a screenshot stops
working after that. Each code is spent once (``member_code_uses``, keyed by the code): the
till's resolve records it, and an order reported with it afterwards claims it once, within
``order_hours`` of the resolve (a till that reports at night still credits the member); an
order may also carry a live code nobody resolved. A code seen over a shoulder is worth
nothing once scanned.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import BigInteger, ForeignKey, String, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.ledger import lock_members
from models.members import Member

PREFIX = "98"
ID_DIGITS = 9
TAG_DIGITS = 7
CODE_LENGTH = len(PREFIX) + ID_DIGITS + TAG_DIGITS
CODE_SHAPE = re.compile(rf"{PREFIX}\d{{{ID_DIGITS + TAG_DIGITS}}}")
# Members ids the code can carry (a billion; the masked id has nine digits).
MAX_MEMBER_ID = 10**ID_DIGITS - 1
# How far back a code is still recognised as one of ours (and refused as expired, not unknown).
LOOKBACK_STEPS = 60


@dataclass(frozen=True, slots=True)
class CodeWindow:
    """How long codes live: ``seconds`` a step, ``grace_seconds`` after it, and how long after
    a resolve an order may still claim the code."""

    seconds: int = 60
    grace_seconds: int = 15
    order_hours: int = 24

    def __post_init__(self) -> None:
        if not 0 <= self.grace_seconds < self.seconds:
            raise ValueError("grace_seconds must be shorter than a step")

    def step(self, now: datetime) -> int:
        """The step (minute) ``now`` falls in."""
        return int(now.timestamp()) // self.seconds

    def ends(self, step: int) -> float:
        """When ``step`` ends (epoch seconds): the page shows the next code then."""
        return float((step + 1) * self.seconds)


class MemberCodeUse(Base):
    """A spent code: resolved at a till (``resolved_at``) and/or claimed by an order."""

    __tablename__ = "member_code_uses"

    code: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    step: Mapped[int] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    order_id: Mapped[str | None] = mapped_column(String(64))


RefusalReason = Literal["unknown", "expired", "used"]


class MemberCodeRefused(Exception):
    """The code cannot be used, for ``reason``; nothing was written."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(reason)
        self.reason: RefusalReason = reason


def _mac(key: bytes, *parts: object) -> int:
    message = "|".join(str(part) for part in parts).encode()
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")


def member_code(key: bytes, member_id: int, step: int) -> str:
    """The member's code for ``step``."""
    if not 0 < member_id <= MAX_MEMBER_ID:
        raise ValueError(f"member id {member_id} does not fit a member code")
    masked = (member_id + _mac(key, "pad", step)) % 10**ID_DIGITS
    tag = _mac(key, "tag", member_id, step) % 10**TAG_DIGITS
    return f"{PREFIX}{masked:0{ID_DIGITS}d}{tag:0{TAG_DIGITS}d}"


@dataclass(frozen=True, slots=True)
class ReadCode:
    """Whose code it is, of which step, and whether it is still live."""

    member_id: int
    step: int
    live: bool


def read_code(key: bytes, code: str, now: datetime, window: CodeWindow) -> ReadCode | None:
    """The member and step behind ``code`` if it is one of ours from the last
    ``LOOKBACK_STEPS`` steps (tags compared in constant time), else None."""
    if not CODE_SHAPE.fullmatch(code):
        return None
    masked = int(code[len(PREFIX) : len(PREFIX) + ID_DIGITS])
    current = window.step(now)
    for back in range(LOOKBACK_STEPS):
        step = current - back
        member_id = (masked - _mac(key, "pad", step)) % 10**ID_DIGITS
        if member_id and hmac.compare_digest(member_code(key, member_id, step), code):
            live = back == 0 or (
                back == 1 and now.timestamp() < window.ends(step) + window.grace_seconds
            )
            return ReadCode(member_id, step, live)
    return None


async def _recorded(session: AsyncSession, code: str) -> MemberCodeUse | None:
    return await session.scalar(
        select(MemberCodeUse)
        .where(MemberCodeUse.code == code)
        .execution_options(populate_existing=True)
    )


async def resolve_member_code(
    session: AsyncSession, key: bytes, code: str, now: datetime, window: CodeWindow
) -> Member:
    """The member a till scanned, spending the code (MemberCodeRefused: ``unknown`` for a
    forged or foreign code or a member no longer on record, ``expired`` after its window,
    ``used`` when resolved or claimed before). One conditional insert: of two tills resolving
    the same code at once, one gets the member."""
    read = read_code(key, code, now, window)
    if read is None:
        raise MemberCodeRefused("unknown")
    if not read.live:
        raise MemberCodeRefused("expired")
    member = await session.get(Member, read.member_id)
    if member is None or member.openid is None:  # erased since (models/personal_data.py)
        raise MemberCodeRefused("unknown")
    inserted = await session.scalar(
        dialect_insert(session)(MemberCodeUse)
        .values(code=code, member_id=read.member_id, step=read.step, resolved_at=now)
        .on_conflict_do_nothing(index_elements=[MemberCodeUse.code])
        .returning(MemberCodeUse.code)
    )
    if inserted is None:
        raise MemberCodeRefused("used")
    return member


async def claim_member_code(
    session: AsyncSession,
    key: bytes,
    code: str,
    shop_order_id: str,
    now: datetime,
    window: CodeWindow,
) -> int:
    """The member whose code an order carries, the code claimed by that order (its id).

    The member row is locked first (``lock_members``: the ledger's lock order), so two orders
    carrying one code are judged one after the other. A code resolved at a till is claimed
    within ``order_hours`` of the resolve; a live code nobody resolved is claimed at once. The
    same order again (a retry) claims it again; another order is refused ``used``. Refusals
    raise MemberCodeRefused and write nothing.
    """
    read: ReadCode | None = None
    recorded = await _recorded(session, code)
    if recorded is not None:
        member_id = recorded.member_id
    else:
        read = read_code(key, code, now, window)
        if read is None:
            raise MemberCodeRefused("unknown")
        member_id = read.member_id
    await lock_members(session, [member_id])
    member = await session.get(Member, member_id)
    if member is None or member.openid is None:
        raise MemberCodeRefused("unknown")
    recorded = await _recorded(session, code)
    if recorded is None:
        if read is None or not read.live:
            raise MemberCodeRefused("expired")
        inserted = await session.scalar(
            dialect_insert(session)(MemberCodeUse)
            .values(
                code=code,
                member_id=member_id,
                step=read.step,
                resolved_at=now,
                order_id=shop_order_id,
            )
            .on_conflict_do_nothing(index_elements=[MemberCodeUse.code])
            .returning(MemberCodeUse.code)
        )
        if inserted is not None:
            return member_id
        # A till resolved it this very moment: judge it as resolved.
        recorded = await _recorded(session, code)
        if recorded is None:
            raise RuntimeError(f"member code use for {code} vanished")
    if recorded.order_id == shop_order_id:
        return member_id
    if recorded.order_id is not None:
        raise MemberCodeRefused("used")
    if recorded.resolved_at + timedelta(hours=window.order_hours) <= now:
        raise MemberCodeRefused("expired")
    claimed = await session.scalar(
        update(MemberCodeUse)
        .where(MemberCodeUse.code == code, MemberCodeUse.order_id.is_(None))
        .values(order_id=shop_order_id)
        .returning(MemberCodeUse.code)
    )
    if claimed is None:
        raise MemberCodeRefused("used")
    return member_id


async def forget_spent_codes(session: AsyncSession, before: datetime) -> int:
    """Delete the uses of codes resolved before ``before``, past any order window (such a code
    is then unknown: its minute is beyond ``LOOKBACK_STEPS``)."""
    result = await session.execute(
        delete(MemberCodeUse)
        .where(MemberCodeUse.resolved_at < before)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
