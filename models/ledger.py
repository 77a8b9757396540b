"""The points ledger: append-only entries, earned lots with expiry, FIFO consumption.

Every change is a ledger entry with a reason and an idempotency key. Earning creates a lot
that remembers what is left of it and when it expires; spending consumes the oldest lots
first. The member's balance is kept on the member row in the same transaction. Invariant,
checked by ``verify_ledger``: balance == sum of entries == sum of what remains in the lots.

Lock order (PostgreSQL; SQLite lets one writer at a time hold the whole database): a
transaction that moves points locks, in this order and never the other way round,

1. the member rows, with ``lock_members`` (ascending id when there are several),
2. then the rows that belong to them: an order being refunded (``lock_order`` in
   models/order_posting.py), then the member's lots.

Every operation here (``credit``, ``credit_many``, ``debit``, ``take_back``,
``reverse_order_points``, ``expire_due_lots``) and every other path that moves points
(refunds, binding merges) starts with ``lock_members``, so a redemption, a refund, a merge
and the nightly expiry batch touching the same members queue on the member row instead of
deadlocking on each other's lots. The lock also makes the idempotency check exact: the same
key arriving twice at once is answered by a replay, not by a unique-key error. The
conditional ``UPDATE … SET points_balance = points_balance - n WHERE points_balance >= n``
then takes the points or changes nothing, so no redemption can overspend. A member's lots are
read without a lock of their own: whoever writes them holds the member's lock first, so a read
after that lock is exact (``debit_locked`` takes lots read that way, in the caller's own
statement).

The hot path's statements are Core, built once (composing one cost more CPU than PostgreSQL
spends running it); nothing here goes through the session's identity map or its flush.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime
from models.events import MemberEvent
from models.members import Member

# What a member and the shop systems are shown as "expiring soon".
EXPIRING_HORIZON = timedelta(days=30)
# session.info key: the members whose points moved in the open transaction.
POINTS_CHANGED = "points_changed"
# The member event every ledger entry comes with (shop systems subscribe to it).
POINTS_CHANGED_EVENT = "points_changed"
# The reason an expiry's entry carries (the ledger's own words; messages/ words it for members).
EXPIRE_REASON = "积分到期"
_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(8))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PointLot(Base):
    __tablename__ = "point_lots"
    __table_args__ = (
        Index(
            "ix_point_lots_member_open",
            "member_id",
            "earned_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_point_lots_expiring",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    # A full index too: moving a member's lots (binding) must find spent ones as well.
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expired_points: Mapped[int] = mapped_column(BigInteger, default=0)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InsufficientPoints(Exception):
    """The member does not have the points; nothing was written."""

    def __init__(self, balance: int, wanted: int) -> None:
        super().__init__(f"balance {balance} is less than {wanted}")
        self.balance = balance
        self.wanted = wanted


class KeyConflict(Exception):
    """The idempotency key was used before for a different change."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one ledger operation did; ``replayed`` when the key had been seen before."""

    entry_id: int
    points: int
    balance_after: int
    replayed: bool = False
    # A debit's draw: (lot id, points taken from it), oldest lot first; what ``restore``
    # gives back with each lot's original expiry. Empty on a replay.
    drawn: tuple[tuple[int, int], ...] = ()


_MEMBERS, _ENTRIES, _LOTS = Member.__table__, LedgerEntry.__table__, PointLot.__table__
# The hot path's statements, built once: composing a statement cost more CPU than PostgreSQL
# spends running it (as for ``points_summary``). Core, not the ORM: nothing here goes through
# the session's identity map or its flush.
_ENTRY_BY_KEY = select(
    _ENTRIES.c.id,
    _ENTRIES.c.member_id,
    _ENTRIES.c.kind,
    _ENTRIES.c.points,
    _ENTRIES.c.balance_after,
).where(_ENTRIES.c.idempotency_key == bindparam("key", type_=String))
_LOCK_MEMBERS = (
    select(_MEMBERS.c.id)
    .where(_MEMBERS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_MEMBERS.c.id)
    .with_for_update()
)
_MOVE_BALANCE = (
    update(_MEMBERS)
    .where(
        _MEMBERS.c.id == bindparam("member_id", type_=BigInteger),
        _MEMBERS.c.points_balance + bindparam("delta", type_=BigInteger) >= 0,
    )
    .values(points_balance=_MEMBERS.c.points_balance + bindparam("delta", type_=BigInteger))
    .returning(_MEMBERS.c.points_balance)
)
_BALANCE = select(_MEMBERS.c.points_balance).where(
    _MEMBERS.c.id == bindparam("member_id", type_=BigInteger)
)
_INSERT_ENTRY = _ENTRIES.insert().returning(_ENTRIES.c.id)
_INSERT_EVENT = MemberEvent.__table__.insert()
_INSERT_LOT = _LOTS.insert()
# One executemany: each drawn lot loses what was taken from it.
_DRAW_LOTS = (
    update(_LOTS)
    .where(_LOTS.c.id == bindparam("lot_id", type_=BigInteger))
    .values(remaining=_LOTS.c.remaining - bindparam("part", type_=BigInteger))
)
_EXPIRE_MEMBER_LOTS = (
    update(_LOTS)
    .where(
        # Not "member_id": an UPDATE reserves its columns' names for its SET clause.
        _LOTS.c.member_id == bindparam("owner", type_=BigInteger),
        _LOTS.c.remaining > 0,
        _LOTS.c.expires_at <= bindparam("now", type_=UTCDateTime),
    )
    .values(
        expired_points=_LOTS.c.remaining,
        remaining=0,
        expired_at=bindparam("now", type_=UTCDateTime),
    )
    .returning(_LOTS.c.expired_points)
)


def open_lots_query(member: Any) -> Select[Any]:
    """The member's open lots (``member``: a bound parameter or a column), in the order a
    debit draws them: oldest first. With ``OpenLot.of`` on its rows, what ``debit_locked``
    takes; a caller may join it into a read of its own (the redemption does)."""
    return select(
        _LOTS.c.id.label("lot_id"),
        _LOTS.c.remaining.label("lot_remaining"),
        _LOTS.c.expires_at.label("lot_expires_at"),
        _LOTS.c.earned_at.label("lot_earned_at"),
    ).where(_LOTS.c.member_id == member, _LOTS.c.remaining > 0)


_OPEN_LOTS = open_lots_query(bindparam("member_id", type_=BigInteger)).order_by(
    _LOTS.c.earned_at, _LOTS.c.id
)


@dataclass(frozen=True, slots=True)
class OpenLot:
    """A lot with points left (``open_lots_query``'s row)."""

    id: int
    remaining: int
    expires_at: datetime

    @classmethod
    def of(cls, row: Any) -> OpenLot:
        return cls(row.lot_id, row.lot_remaining, row.lot_expires_at)


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection, after flushing what the caller left pending (a Core statement
    does not autoflush, and the caller's rows may be what ours refer to)."""
    if session.new or session.deleted or session.dirty:
        await session.flush()
    return await session.connection()


async def _replay(
    connection: AsyncConnection, key: str, member_id: int, points: int | None, kind: str
) -> Change | None:
    entry = (await connection.execute(_ENTRY_BY_KEY, {"key": key})).one_or_none()
    if entry is None:
        return None
    if (
        entry.member_id != member_id
        or entry.kind != kind
        or (points is not None and entry.points != points)
    ):
        raise KeyConflict(f"idempotency key {key!r} was used for a different change")
    return Change(entry.id, entry.points, entry.balance_after, replayed=True)


async def lock_members(session: AsyncSession, member_ids: Iterable[int]) -> None:
    """Lock the members' rows, in ascending id order: the first lock of every transaction
    that moves their points (see the lock order above). A member already locked by this
    transaction is not waited for again; a member that does not exist is skipped."""
    ids = sorted(set(member_ids))
    if not ids or session.bind is None or session.bind.dialect.name != "postgresql":
        return
    await (await _connection(session)).execute(_LOCK_MEMBERS, {"ids": ids})


def note_points_changed(session: AsyncSession, member_ids: Iterable[int]) -> None:
    """Note members whose points move in this transaction; after it commits, whoever caches
    points summaries is told (bot/database.py)."""
    session.info.setdefault(POINTS_CHANGED, set()).update(member_ids)


async def _move_balance(
    session: AsyncSession, connection: AsyncConnection, member_id: int, delta: int
) -> int | None:
    """Add ``delta`` unless the balance would go negative; the new balance, else None."""
    note_points_changed(session, (member_id,))
    result = await connection.execute(_MOVE_BALANCE, {"member_id": member_id, "delta": delta})
    return result.scalar_one_or_none()


async def _add_entry(
    connection: AsyncConnection,
    member_id: int,
    kind: str,
    points: int,
    balance: int,
    reason: str,
    key: str,
    at: datetime,
    order_id: int | None,
) -> int:
    """Write the entry and the member event that comes with it; the entry's id."""
    reason = reason[:200]
    entry_id: int = (
        await connection.execute(
            _INSERT_ENTRY,
            {
                "member_id": member_id,
                "kind": kind,
                "points": points,
                "balance_after": balance,
                "reason": reason,
                "idempotency_key": key,
                "order_id": order_id,
                "created_at": at,
            },
        )
    ).scalar_one()
    await connection.execute(
        _INSERT_EVENT,
        {
            "member_id": member_id,
            "kind": POINTS_CHANGED_EVENT,
            "payload": {"points": points, "balance": balance, "kind": kind, "reason": reason},
            "created_at": at,
        },
    )
    return entry_id


async def credit(
    session: AsyncSession,
    member_id: int,
    points: int,
    *,
    kind: str,
    reason: str,
    key: str,
    at: datetime,
    expires_at: datetime,
    order_id: int | None = None,
) -> Change:
    """Add ``points`` as a new lot expiring at ``expires_at`` (earn, bonus, positive adjust)."""
    if points <= 0:
        raise ValueError("credit needs a positive number of points")
    await lock_members(session, (member_id,))
    connection = await _connection(session)
    if replay := await _replay(connection, key, member_id, points, kind):
        return replay
    balance = await _move_balance(session, connection, member_id, points)
    if balance is None:
        raise LookupError(f"member {member_id} does not exist")
    entry_id = await _add_entry(
        connection, member_id, kind, points, balance, reason, key, at, order_id
    )
    await connection.execute(
        _INSERT_LOT,
        {
            "member_id": member_id,
            "entry_id": entry_id,
            "order_id": order_id,
            "amount": points,
            "remaining": points,
            "earned_at": at,
            "expires_at": expires_at,
            "expired_points": 0,
        },
    )
    return Change(entry_id, points, balance)


async def credit_many(
    session: AsyncSession,
    credits: Sequence[tuple[int, int, str]],
    *,
    kind: str,
    reason: str,
    at: datetime,
    expires_at: datetime,
) -> int:
    """``credit`` for many members at once — (member, points, key) each — in a fixed number
    of statements whatever their count: lock the members (the lock order above), leave out
    the keys seen before, write the entries, raise the balances, then write the lots and
    events. Returns the points credited."""
    if any(points <= 0 for _, points, _ in credits):
        raise ValueError("credit needs a positive number of points")
    if not credits:
        return 0
    await lock_members(session, (member_id for member_id, _, _ in credits))
    connection = await session.connection()
    members, entries = Member.__table__, LedgerEntry.__table__
    wanted = {key: (member_id, points) for member_id, points, key in credits}
    # A key credited before credits nothing again (the members are locked, and every path
    # that writes their entries takes the same lock first, so this read is exact).
    seen = (
        await connection.execute(
            select(entries.c.idempotency_key).where(entries.c.idempotency_key.in_(list(wanted)))
        )
    ).scalars()
    for key in seen:
        del wanted[key]
    if not wanted:
        return 0
    balances = dict(
        (
            await connection.execute(
                select(members.c.id, members.c.points_balance).where(
                    members.c.id.in_({m for m, _ in wanted.values()})
                )
            )
        ).all()
    )
    rows = []
    for key, (member_id, points) in wanted.items():
        if member_id not in balances:
            raise LookupError(f"member {member_id} does not exist")
        balances[member_id] += points
        rows.append(
            {
                "member_id": member_id,
                "kind": kind,
                "points": points,
                "balance_after": balances[member_id],
                "reason": reason[:200],
                "idempotency_key": key,
                "created_at": at,
            }
        )
    written = (
        await connection.execute(
            entries.insert().returning(
                entries.c.id, entries.c.member_id, entries.c.points, entries.c.balance_after
            ),
            rows,
        )
    ).all()
    totals: Counter[int] = Counter()
    for _, member_id, points, _ in written:
        totals[member_id] += points
    note_points_changed(session, totals)
    await connection.execute(
        update(members)
        .where(members.c.id == bindparam("m"))
        .values(points_balance=members.c.points_balance + bindparam("t")),
        [{"m": member_id, "t": total} for member_id, total in totals.items()],
    )
    await connection.execute(
        PointLot.__table__.insert(),
        [
            {
                "member_id": member_id,
                "entry_id": entry_id,
                "order_id": None,
                "amount": points,
                "remaining": points,
                "earned_at": at,
                "expires_at": expires_at,
                "expired_points": 0,
            }
            for entry_id, member_id, points, _ in written
        ],
    )
    await connection.execute(
        MemberEvent.__table__.insert(),
        [
            {
                "member_id": member_id,
                "kind": POINTS_CHANGED_EVENT,
                "payload": {"points": points, "balance": after, "kind": kind, "reason": reason},
                "created_at": at,
            }
            for _, member_id, points, after in written
        ],
    )
    return sum(totals.values())


async def _open_lots(
    connection: AsyncConnection, member_id: int, first_order: int | None = None
) -> list[OpenLot]:
    if first_order is None:
        rows = await connection.execute(_OPEN_LOTS, {"member_id": member_id})
        return [OpenLot.of(row) for row in rows]
    # This order's lot first (a refund takes back what the order earned), then every other
    # lot oldest first, whatever its kind: an explicit 0/1, because a comparison with a lot
    # that has no order is NULL, which SQLite sorts first and PostgreSQL last.
    own = case((_LOTS.c.order_id == first_order, 0), else_=1)
    query = open_lots_query(member_id).order_by(own, _LOTS.c.earned_at, _LOTS.c.id)
    return [OpenLot.of(row) for row in await connection.execute(query)]


def _consume(lots: Iterable[OpenLot], points: int) -> list[tuple[int, int]]:
    """Take up to ``points`` from ``lots`` in order; return (lot id, points) taken of each."""
    drawn: list[tuple[int, int]] = []
    taken = 0
    for lot in lots:
        if taken == points:
            break
        part = min(lot.remaining, points - taken)
        taken += part
        drawn.append((lot.id, part))
    return drawn


async def _draw(connection: AsyncConnection, drawn: Sequence[tuple[int, int]]) -> None:
    if drawn:
        await connection.execute(
            _DRAW_LOTS, [{"lot_id": lot_id, "part": part} for lot_id, part in drawn]
        )


async def debit(
    session: AsyncSession,
    member_id: int,
    points: int,
    *,
    kind: str,
    reason: str,
    key: str,
    at: datetime,
) -> Change:
    """Take ``points`` from the oldest lots (redeem, negative adjust); InsufficientPoints if
    the balance is short, in which case nothing is written."""
    if points <= 0:
        raise ValueError("debit needs a positive number of points")
    await lock_members(session, (member_id,))
    connection = await _connection(session)
    if replay := await _replay(connection, key, member_id, -points, kind):
        return replay
    lots = await _open_lots(connection, member_id)
    return await debit_locked(
        session, member_id, points, lots, kind=kind, reason=reason, key=key, at=at
    )


async def debit_locked(
    session: AsyncSession,
    member_id: int,
    points: int,
    lots: Sequence[OpenLot],
    *,
    kind: str,
    reason: str,
    key: str,
    at: datetime,
) -> Change:
    """``debit``'s writes, for a caller that already holds the member's lock
    (``lock_members``), found ``key`` unused, and read the member's open lots after the lock
    (``open_lots_query``, oldest first): the due lots expire first (no expired point is
    spent), the balance falls unless it is short (InsufficientPoints), the oldest lots are
    drawn, and the entry and its event are written."""
    if points <= 0:
        raise ValueError("debit needs a positive number of points")
    connection = await _connection(session)
    if any(lot.expires_at <= at for lot in lots):
        await _expire_member_lots(session, member_id, at)
    balance = await _move_balance(session, connection, member_id, -points)
    if balance is None:
        current = (await connection.execute(_BALANCE, {"member_id": member_id})).scalar()
        if current is None:
            raise LookupError(f"member {member_id} does not exist")
        raise InsufficientPoints(current, points)
    drawn = _consume((lot for lot in lots if lot.expires_at > at), points)
    await _draw(connection, drawn)
    entry_id = await _add_entry(
        connection, member_id, kind, -points, balance, reason, key, at, None
    )
    return Change(entry_id, -points, balance, drawn=tuple(drawn))


async def restore(
    session: AsyncSession,
    member_id: int,
    drawn: Iterable[tuple[int, int]],
    *,
    reason: str,
    key: str,
    at: datetime,
) -> Change:
    """Give back what a debit drew (``Change.drawn``: lot id, points) as one ``return`` entry
    (not ``refund``, which takes back an order's points) whose new lots keep each drawn lot's
    earning time and original expiry (and order), so a cancelled redemption neither extends
    nor shortens the points' life. A part whose expiry
    has passed is expired again at once, as it would have been had it never been spent.
    The same ``key`` again gives nothing more."""
    parts = [(lot_id, points) for lot_id, points in drawn if points > 0]
    total = sum(points for _, points in parts)
    if total <= 0:
        raise ValueError("restore needs points drawn")
    await lock_members(session, (member_id,))
    connection = await _connection(session)
    if replay := await _replay(connection, key, member_id, total, "return"):
        return replay
    sources = {
        lot.id: lot
        for lot in await session.scalars(
            select(PointLot).where(PointLot.id.in_([lot_id for lot_id, _ in parts]))
        )
    }
    if len(sources) != len({lot_id for lot_id, _ in parts}) or any(
        lot.member_id != member_id for lot in sources.values()
    ):
        raise LookupError(f"member {member_id}: the drawn lots are not all theirs")
    balance = await _move_balance(session, connection, member_id, total)
    if balance is None:
        raise LookupError(f"member {member_id} does not exist")
    entry_id = await _add_entry(
        connection, member_id, "return", total, balance, reason, key, at, None
    )
    await connection.execute(
        _INSERT_LOT,
        [
            {
                "member_id": member_id,
                "entry_id": entry_id,
                "order_id": sources[lot_id].order_id,
                "amount": points,
                "remaining": points,
                "earned_at": sources[lot_id].earned_at,
                "expires_at": sources[lot_id].expires_at,
                "expired_points": 0,
            }
            for lot_id, points in parts
        ],
    )
    await _expire_member_lots(session, member_id, at)
    return Change(entry_id, total, balance)


@dataclass(frozen=True, slots=True)
class Reversal:
    """A refund's effect on points: what was taken back (``change``), what could not be
    because it was spent and the balance is short (``unrecovered``), and what was not taken
    again because it had already expired (``expired``)."""

    change: Change | None
    unrecovered: int
    expired: int = 0


async def reverse_order_points(
    session: AsyncSession,
    member_id: int,
    order_id: int,
    points: int,
    *,
    expired_before: int,
    reason: str,
    key: str,
    at: datetime,
) -> Reversal:
    """Take back ``points`` an order earned, its unspent points first: what is still in the
    order's lot is taken back; what expired from it is not taken again (expired is not spent:
    the member already lost it), and is reported as ``expired``. The rest was spent and is
    taken from the member's other lots, oldest first, never below zero; what the balance
    cannot cover is reported as unrecovered (written off, not a debt). ``expired_before``:
    the order's expired points that earlier refunds of it already counted."""
    if points <= 0:
        return Reversal(None, 0)
    await lock_members(session, (member_id,))
    await _expire_member_lots(session, member_id, at)
    lots = PointLot.__table__
    own_remaining, own_expired = (
        await session.execute(
            select(
                func.coalesce(func.sum(lots.c.remaining), 0),
                func.coalesce(func.sum(lots.c.expired_points), 0),
            ).where(lots.c.order_id == order_id)
        )
    ).one()
    # int(): PostgreSQL's sum of a BIGINT is a NUMERIC.
    uncounted_expired = max(int(own_expired) - expired_before, 0)
    expired = min(max(points - int(own_remaining), 0), uncounted_expired)
    reversal = await take_back(
        session,
        member_id,
        points - expired,
        kind="refund",
        reason=reason,
        key=key,
        at=at,
        order_id=order_id,
    )
    return Reversal(reversal.change, reversal.unrecovered, expired)


async def take_back(
    session: AsyncSession,
    member_id: int,
    points: int,
    *,
    kind: str,
    reason: str,
    key: str,
    at: datetime,
    order_id: int | None = None,
) -> Reversal:
    """Take back up to ``points`` (a refund, a reward clawed back): from ``order_id``'s lot
    first when given, then the others oldest first, never below zero; the shortfall is
    reported as unrecovered. The same ``key`` again takes nothing more."""
    if points <= 0:
        return Reversal(None, 0)
    await lock_members(session, (member_id,))
    connection = await _connection(session)
    if replay := await _replay(connection, key, member_id, None, kind):
        return Reversal(replay, points + replay.points)
    await _expire_member_lots(session, member_id, at)
    drawn = _consume(await _open_lots(connection, member_id, first_order=order_id), points)
    taken = sum(part for _, part in drawn)
    if taken == 0:
        return Reversal(None, points)
    balance = await _move_balance(session, connection, member_id, -taken)
    if balance is None:
        raise RuntimeError(f"member {member_id}: balance and lots disagree")
    await _draw(connection, drawn)
    entry_id = await _add_entry(
        connection, member_id, kind, -taken, balance, reason, key, at, order_id
    )
    return Reversal(Change(entry_id, -taken, balance), points - taken)


def expire_key(member_id: int, now: datetime) -> str:
    """The idempotency key of one member's expiry at ``now`` (before a debit)."""
    return f"expire:{member_id}:{now.isoformat()}"


async def _expire_member_lots(session: AsyncSession, member_id: int, now: datetime) -> int:
    """Expire one member's due lots now (before spending, so no expired point is spent), in
    one UPDATE that returns what it expired. The caller holds the member's lock
    (``lock_members``)."""
    connection = await _connection(session)
    expired = await connection.execute(_EXPIRE_MEMBER_LOTS, {"owner": member_id, "now": now})
    total = sum(expired.scalars())
    if not total:
        return 0
    balance = await _move_balance(session, connection, member_id, -total)
    if balance is None:
        raise RuntimeError(f"member {member_id}: balance and lots disagree")
    await _add_entry(
        connection,
        member_id,
        "expire",
        -total,
        balance,
        EXPIRE_REASON,
        expire_key(member_id, now),
        now,
        None,
    )
    return total


async def expire_due_lots(session: AsyncSession, now: datetime, batch: int = 20_000) -> int:
    """Expire every lot due by ``now``, set-based, ``batch`` members per transaction.

    The due members are found once through the expiry index. Per batch: lock the members
    (``lock_members``: member rows before lots, as on every path), zero their due lots in one
    UPDATE that returns what it expired, lower the balances and write one expire entry per
    member (each a single multi-row statement). The session is committed after each batch.
    Returns the points expired.
    """
    due = array(
        "q",
        sorted(
            (
                await session.scalars(
                    select(PointLot.member_id)
                    .distinct()
                    .where(PointLot.remaining > 0, PointLot.expires_at <= now)
                )
            ).all()
        ),
    )
    expired_total = 0
    stamp = now.isoformat()
    for start in range(0, len(due), batch):
        ids = due[start : start + batch].tolist()
        await lock_members(session, ids)
        expired = await session.execute(
            update(PointLot)
            .where(
                # Only the locked members' lots (an id range would also catch a member whose
                # due lot was written after the search above, without its lock).
                PointLot.member_id.in_(ids),
                PointLot.remaining > 0,
                PointLot.expires_at <= now,
            )
            .values(expired_points=PointLot.remaining, remaining=0, expired_at=now)
            .returning(PointLot.member_id, PointLot.expired_points)
            .execution_options(synchronize_session=False)
        )
        totals: Counter[int] = Counter()
        for member_id, points in expired:
            totals[member_id] += points
        if not totals:
            await session.commit()
            continue
        note_points_changed(session, totals)
        connection = await session.connection()
        members = Member.__table__
        await connection.execute(
            update(members)
            .where(members.c.id == bindparam("m"))
            .values(points_balance=members.c.points_balance - bindparam("t")),
            [{"m": member_id, "t": total} for member_id, total in totals.items()],
        )
        balances = dict(
            (
                await connection.execute(
                    select(members.c.id, members.c.points_balance).where(
                        members.c.id.in_(list(totals))
                    )
                )
            ).all()
        )
        await connection.execute(
            LedgerEntry.__table__.insert(),
            [
                {
                    "member_id": member_id,
                    "kind": "expire",
                    "points": -total,
                    "balance_after": balances[member_id],
                    "reason": EXPIRE_REASON,
                    "idempotency_key": f"expire:{member_id}:{stamp}",
                    "created_at": now,
                }
                for member_id, total in totals.items()
            ],
        )
        await connection.execute(
            MemberEvent.__table__.insert(),
            [
                {
                    "member_id": member_id,
                    "kind": POINTS_CHANGED_EVENT,
                    "payload": {
                        "points": -total,
                        "balance": balances[member_id],
                        "kind": "expire",
                        "reason": EXPIRE_REASON,
                    },
                    "created_at": now,
                }
                for member_id, total in totals.items()
            ],
        )
        expired_total += sum(totals.values())
        await session.commit()
    return expired_total


@dataclass(frozen=True, slots=True)
class Mismatch:
    member_id: int
    balance: int
    ledger_sum: int
    lots_remaining: int


async def verify_ledger(session: AsyncSession) -> AsyncIterator[Mismatch]:
    """Every member whose balance, ledger sum and lots disagree (streamed, set-based)."""
    ledger = (
        select(LedgerEntry.member_id, func.sum(LedgerEntry.points).label("total"))
        .group_by(LedgerEntry.member_id)
        .subquery()
    )
    lots = (
        select(PointLot.member_id, func.sum(PointLot.remaining).label("total"))
        .group_by(PointLot.member_id)
        .subquery()
    )
    ledger_sum = func.coalesce(ledger.c.total, 0)
    lots_sum = func.coalesce(lots.c.total, 0)
    query = (
        select(Member.id, Member.points_balance, ledger_sum, lots_sum)
        .outerjoin(ledger, ledger.c.member_id == Member.id)
        .outerjoin(lots, lots.c.member_id == Member.id)
        .where((Member.points_balance != ledger_sum) | (Member.points_balance != lots_sum))
        .order_by(Member.id)
    )
    result = await session.stream(query)
    async for row in result:
        yield Mismatch(*row)


async def ledger_page(
    session: AsyncSession, member_id: int, limit: int, before: int | None = None
) -> list[LedgerEntry]:
    """Up to ``limit`` entries, newest first, older than entry id ``before``."""
    query = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    return list((await session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit))).all())


async def expiring_soon(
    db: AsyncSession | AsyncConnection, member_id: int, now: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """(expiry time, points) of the member's points expiring between now and ``until``."""
    lots = PointLot.__table__
    rows = await db.execute(
        select(lots.c.expires_at, func.sum(lots.c.remaining))
        .where(
            lots.c.member_id == member_id,
            lots.c.remaining > 0,
            lots.c.expires_at > now,
            lots.c.expires_at <= until,
        )
        .group_by(lots.c.expires_at)
        .order_by(lots.c.expires_at)
    )
    return [(at, int(points)) for at, points in rows]


@dataclass(frozen=True, slots=True)
class PointsSummary:
    """What a member sees when asking for points: balance, soon-expiring points, recent."""

    balance: int
    bound: bool
    expiring: list[tuple[datetime, int]]
    recent: list[tuple[datetime, str, str, int]]  # (when, kind, reason, points)


def _points_summary_statement() -> CompoundSelect[Any]:
    """Built once: composing the statement cost more CPU than PostgreSQL spends running it."""
    members, entries, lots = Member.__table__, LedgerEntry.__table__, PointLot.__table__
    member = bindparam("member_id", type_=BigInteger)
    # Typed NULLs: PostgreSQL must resolve each stacked column to one type.
    no_time, no_text = cast(null(), UTCDateTime), cast(null(), String)
    balance = select(
        literal("b").label("part"),
        case((members.c.customer_ref.is_(None), 0), else_=1).label("seq"),  # bound?
        members.c.points_balance.label("points"),
        no_time.label("at"),
        no_text.label("kind"),
        no_text.label("reason"),
    ).where(members.c.id == member)
    expiring = (
        select(
            literal("e"),
            0,
            cast(func.sum(lots.c.remaining), BigInteger),  # not NUMERIC: keep ints ints
            lots.c.expires_at,
            no_text,
            no_text,
        )
        .where(
            lots.c.member_id == member,
            lots.c.remaining > 0,
            lots.c.expires_at > bindparam("now", type_=UTCDateTime),
            lots.c.expires_at <= bindparam("until", type_=UTCDateTime),
        )
        .group_by(lots.c.expires_at)
    )
    columns = ("id", "points", "created_at", "kind", "reason")
    latest = (
        select(*(entries.c[name] for name in columns))
        .where(entries.c.member_id == member)
        .order_by(entries.c.id.desc())
        .limit(bindparam("recent", type_=Integer))
        .subquery()
    )
    changes = select(literal("r"), *(latest.c[name] for name in columns))
    return union_all(balance, expiring, changes)


_POINTS_SUMMARY = _points_summary_statement()


async def points_summary(
    connection: AsyncConnection, member_id: int, now: datetime, until: datetime, recent: int = 3
) -> PointsSummary | None:
    """The member's points at a glance in one indexed statement, a single round trip: the
    balance row, the expiring lots grouped by date, and the latest entries, tagged and stacked
    with UNION ALL (no ORM objects: this answers every 积分 message the cache cannot)."""
    parameters = {"member_id": member_id, "now": now, "until": until, "recent": recent}
    rows = (await connection.execute(_POINTS_SUMMARY, parameters)).all()
    head = next((row for row in rows if row.part == "b"), None)
    if head is None:
        return None
    return PointsSummary(
        balance=head.points,
        bound=bool(head.seq),
        expiring=sorted((row.at, row.points) for row in rows if row.part == "e"),
        recent=[
            (row.at, row.kind, row.reason, row.points)
            for row in sorted((row for row in rows if row.part == "r"), key=lambda row: -row.seq)
        ],
    )


async def expiring_groups(
    session: AsyncSession, after: datetime, until: datetime, batch: int = 1000
) -> AsyncIterator[list[tuple[int, datetime, int]]]:
    """Subscribed members' unspent points expiring in (after, until], as (member id, expiry,
    points) per member and expiry time, streamed in batches (a million members fit in memory
    one batch at a time)."""
    lots = PointLot.__table__
    members = Member.__table__
    query = (
        select(lots.c.member_id, lots.c.expires_at, func.sum(lots.c.remaining))
        .join(members, members.c.id == lots.c.member_id)
        .where(
            lots.c.remaining > 0,
            lots.c.expires_at > after,
            lots.c.expires_at <= until,
            members.c.subscribed.is_(True),
            members.c.openid.is_not(None),
        )
        .group_by(lots.c.member_id, lots.c.expires_at)
        .order_by(lots.c.member_id, lots.c.expires_at)
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield [(member_id, at, int(points)) for member_id, at, points in rows]
