"""Redeeming a catalogue item (models/rewards.py) with points: ``redeem`` in the caller's
transaction, ``redeem_on_its_own`` in a transaction of its own.

A redemption is one transaction, in the ledger's lock order (models/ledger.py): the member's
row first (``lock_members``: it serialises one member's redemptions, so their limit holds),
then one read of all it decides on (the key's earlier redemption, balance, tier, the item,
the member's uses of it, their open lots), the checks (tier, window, stock, the member's
limit, balance), then, inside a savepoint, the debit through the ledger (``debit_locked``:
oldest lots first), the coupon or the fulfilment record, and last the stock decrement, a
conditional UPDATE of the item's row: the one row every redemption of a popular item shares
is locked only from that statement to the commit, not for the whole transaction (sold out
there: the savepoint is rolled back and nothing is written). SQLite lets one writer at a time
hold the whole database. The caller's idempotency key makes a repeated confirmation or a
retried request redeem once: the same key answers with the first redemption.

On PostgreSQL the redemption runs as one call of a PL/pgSQL function, ``redeem_reward``
(migration 0025): the same steps, lock order and answers in one round trip, because each
of the ten statements through SQLAlchemy's async layer cost more CPU than PostgreSQL spends
running it (about three times the CPU of the one call: bench/README.md, redemption). SQLite
has no such functions, so ``redeem`` there runs the steps from Python (``_redeem_in_python``).
Two implementations of one money path must not drift: tests/models/test_rewards_in_db.py runs
every scenario through both on PostgreSQL and compares every row they write; a change to
either changes both, or fails there.

``redeem_on_its_own`` sends that one call in autocommit, by the pooled connection's asyncpg
itself (``driver_on_its_own``): every redemption of an item updates the item's stock row, and
the row stays locked only while PostgreSQL runs the function, not until a COMMIT comes back from
a busy event loop. The chat's 确认 goes through models/redemption_groups.py, which sends the
confirmations of one item that arrive together as one call.

Everything here returns facts (dataclasses and refusal codes); messages/ words them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    bindparam,
    column,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.base import (
    UTCDateTime,
    driver_on_its_own,
    on_its_own,
    on_postgresql,
    points_committed,
)
from models.codes import random_code
from models.coupons import (
    CODE_ATTEMPTS,
    Coupon,
    UnknownCouponKind,
    issue_coupon,
    new_coupon_code,
)
from models.ledger import (
    EXPIRE_REASON,
    InsufficientPoints,
    KeyConflict,
    OpenLot,
    debit_locked,
    expire_key,
    lock_members,
    note_points_changed,
    open_lots_query,
)
from models.rewards import (
    ONE_OFFER,
    PICKUP_CODE_LENGTH,
    REWARD_FIELDS,
    Redeemed,
    Redemption,
    Refusal,
    Reward,
    RewardItem,
    closed_to,
    period_start,
    reward_of,
    write_first,
)
from models.rules import ProgrammeRules


def _redeem_read_statement() -> Select:
    """Everything a redemption decides on, read after the member's lock in one statement:
    the catalogue's own row for the item (balance, tier, the item, the member's uses of it
    this period), the redemption already made with this key (and its coupon), if any, and
    the member's open lots in the order the ledger draws them (one row per lot; a member
    without points still gets one row)."""
    offer = ONE_OFFER.subquery("offer")
    earlier = Redemption.__table__.alias("earlier")
    c = Coupon.__table__.c
    lots = open_lots_query(bindparam("member_id", type_=BigInteger)).subquery("lots")
    joined = (
        offer.outerjoin(earlier, earlier.c.idempotency_key == bindparam("key", type_=String))
        .outerjoin(Coupon.__table__, c.id == earlier.c.coupon_id)
        .outerjoin(lots, true())
    )
    return (
        select(
            offer,
            earlier.c.id.label("earlier_id"),
            earlier.c.member_id.label("earlier_member_id"),
            earlier.c.item_id.label("earlier_item_id"),
            earlier.c.points.label("earlier_points"),
            earlier.c.cash_fen.label("earlier_cash_fen"),
            earlier.c.status.label("earlier_status"),
            earlier.c.pickup_code.label("earlier_pickup_code"),
            c.code.label("coupon_code"),
            c.valid_until.label("coupon_valid_until"),
            lots.c.lot_id,
            lots.c.lot_remaining,
            lots.c.lot_expires_at,
        )
        .select_from(joined)
        .order_by(lots.c.lot_earned_at, lots.c.lot_id)
    )


_REDEEM_READ = _redeem_read_statement()
_INSERT_REDEMPTION = Redemption.__table__.insert().returning(Redemption.__table__.c.id)
_TAKE_ONE = (
    update(RewardItem.__table__)
    .where(
        RewardItem.__table__.c.id == bindparam("item_id", type_=BigInteger),
        RewardItem.__table__.c.stock > 0,
    )
    .values(stock=RewardItem.__table__.c.stock - 1)
    .returning(RewardItem.__table__.c.stock)
)


def _pickup_code() -> str:
    return random_code(PICKUP_CODE_LENGTH)


async def redeem(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    *,
    key: str,
    now: datetime,
    expected_points: int | None = None,
) -> Redeemed | Refusal:
    """Redeem ``item_id`` for the member, in the caller's transaction (see the module's
    docstring for the steps and the lock order). ``key`` identifies this redemption: the same
    key again answers with the first redemption and writes nothing; used by another member
    or for another item, KeyConflict. ``expected_points``: the price the member confirmed
    (a changed price is refused, not charged). On SQLite, call it before the transaction
    reads anything (see ``write_first``). NoResultFound: no such member."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return await _redeem_in_database(
            session, rules, member_id, item_id, key, now, expected_points
        )
    return await _redeem_in_python(
        session, rules, member_id, item_id, key=key, now=now, expected_points=expected_points
    )


async def redeem_on_its_own(
    sessions: async_sessionmaker[AsyncSession],
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    *,
    key: str,
    now: datetime,
    expected_points: int | None = None,
) -> Redeemed | Refusal:
    """``redeem`` in a transaction of its own, committed when this returns (the chat's 确认).

    On PostgreSQL that transaction is the one statement calling ``redeem_reward``, sent in
    autocommit: the item's row, which every redemption of that item updates, is locked only
    while PostgreSQL runs the function. In a transaction of the caller's, the lock lasted
    until the COMMIT came back from this process, a turn of a busy event loop later, and a
    popular item's redemptions queued on it one loop turn each (bench/README.md, redemption).
    """
    if on_postgresql(sessions):
        return await redeem_alone_in_database(
            sessions, rules, member_id, item_id, key, now, expected_points
        )
    async with on_its_own(sessions) as session:
        return await redeem(
            session,
            rules,
            member_id,
            item_id,
            key=key,
            now=now,
            expected_points=expected_points,
        )


def _redeem_reward_statement() -> Select:
    """``SELECT * FROM redeem_reward(…)`` as a Core statement: compiled once, with its result's
    columns known in advance (a textual one matched them by name on every call)."""
    i = RewardItem.__table__.c
    arguments = (
        bindparam("member_id", type_=BigInteger),
        bindparam("item_id", type_=BigInteger),
        bindparam("key", type_=String),
        bindparam("now", type_=UTCDateTime),
        bindparam("month_start", type_=UTCDateTime),
        bindparam("year_start", type_=UTCDateTime),
        bindparam("expected", type_=BigInteger),
        bindparam("pickup_code", type_=String),
        bindparam("coupon_code", type_=String),
        bindparam("coupon_kinds", type_=ARRAY(String)),
        bindparam("coupon_days", type_=ARRAY(Integer)),
        bindparam("expire_key", type_=String),
        bindparam("expire_reason", type_=String),
    )
    returned = func.redeem_reward(*arguments).table_valued(
        column("outcome", String),
        column("shortfall", BigInteger),
        column("refusal_opens_at", UTCDateTime),
        column("redemption_id", BigInteger),
        column("spent", BigInteger),
        column("cash_due", BigInteger),
        column("balance_after", BigInteger),
        column("redemption_status", String),
        column("coupon_code", String),
        column("coupon_valid_until", UTCDateTime),
        column("pickup_code", String),
        *(column(name, i[name].type) for name in REWARD_FIELDS),
        name="redeemed",
    )
    return select(returned)


_REDEEM_REWARD = _redeem_reward_statement()
# The same statement as asyncpg is sent it (``driver_on_its_own``), and its parameters' order.
_COMPILED = _REDEEM_REWARD.compile(dialect=asyncpg_dialect.dialect())
_REDEEM_REWARD_SQL = str(_COMPILED)
_REDEEM_REWARD_ORDER = tuple(_COMPILED.positiontup or ())


def redeem_reward_params(
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    key: str,
    now: datetime,
    expected_points: int | None,
) -> dict[str, Any]:
    """``redeem_reward``'s arguments by name: what Python decides (the codes drawn, the period
    starts, the coupon kinds' validity, the expiry entry's key) beside the request's own."""
    return {
        "member_id": member_id,
        "item_id": item_id,
        "key": key,
        "now": now,
        "month_start": period_start("month", now, rules),
        "year_start": period_start("year", now, rules),
        "expected": expected_points,
        "pickup_code": _pickup_code(),
        "coupon_code": new_coupon_code(),
        "coupon_kinds": [kind.code for kind in rules.coupons],
        "coupon_days": [kind.valid_days for kind in rules.coupons],
        "expire_key": expire_key(member_id, now),
        "expire_reason": EXPIRE_REASON,
    }


async def _call_redeem_reward(
    call: Callable[[dict[str, Any]], Awaitable[Any]], params: dict[str, Any]
) -> Any:
    """``redeem_reward``'s row through ``call``; a coupon code already taken is drawn again,
    as ``issue_coupon`` would."""
    for _ in range(CODE_ATTEMPTS):
        row = await call(params)
        if row.outcome != "code_taken":
            return row
        params["coupon_code"] = new_coupon_code()
    raise RuntimeError(f"no free coupon code after {CODE_ATTEMPTS} attempts")


def outcome_of(row: Any, member_id: int, key: str) -> Redeemed | Refusal:
    """What ``redeem_reward``'s row says, as ``redeem`` answers it."""
    outcome = row.outcome
    if outcome == "redeemed" or outcome == "replayed":
        return Redeemed(
            row.redemption_id,
            reward_of(row),
            row.spent,
            row.cash_due,
            row.balance_after,
            row.redemption_status,
            row.coupon_code,
            row.coupon_valid_until,
            row.pickup_code,
            replayed=outcome == "replayed",
        )
    if outcome == "no_member":
        raise NoResultFound(f"no member {member_id}")
    if outcome == "key_conflict":
        raise KeyConflict(f"idempotency key {key!r} redeemed something else")
    if outcome == "unknown_coupon_kind":
        raise UnknownCouponKind(f"no coupon kind {row.coupon_kind!r} is configured")
    return Refusal(outcome, shortfall=row.shortfall or 0, opens_at=row.refusal_opens_at)


async def _redeem_in_database(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    key: str,
    now: datetime,
    expected_points: int | None,
) -> Redeemed | Refusal:
    """``redeem`` on PostgreSQL, in the session's transaction: the whole of it in one call of
    ``redeem_reward`` (migration 0025), one round trip."""
    if session.new or session.deleted or session.dirty:
        await session.flush()  # the caller's pending rows may be what the function reads
    connection = await session.connection()

    async def call(params: dict[str, Any]) -> Any:
        return (await connection.execute(_REDEEM_REWARD, params)).one()

    row = await _call_redeem_reward(
        call, redeem_reward_params(rules, member_id, item_id, key, now, expected_points)
    )
    if row.outcome == "redeemed":
        note_points_changed(session, (member_id,))
    return outcome_of(row, member_id, key)


class RecordColumns:
    """An asyncpg record read by attribute, as SQLAlchemy's rows are (``reward_of``). Its JSON
    columns arrive decoded: SQLAlchemy's dialect sets asyncpg's JSON codec on each connection."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return self._record[name]


async def redeem_alone_in_database(
    sessions: async_sessionmaker[AsyncSession],
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    key: str,
    now: datetime,
    expected_points: int | None,
) -> Redeemed | Refusal:
    """``redeem_on_its_own`` on PostgreSQL: the call sent by asyncpg itself, in autocommit."""
    params = redeem_reward_params(rules, member_id, item_id, key, now, expected_points)
    async with driver_on_its_own(sessions) as driver:

        async def call(params: dict[str, Any]) -> Any:
            values = [params[name] for name in _REDEEM_REWARD_ORDER]
            return RecordColumns(await driver.fetchrow(_REDEEM_REWARD_SQL, *values))

        row = await _call_redeem_reward(call, params)
    if row.outcome == "redeemed":
        points_committed(sessions, (member_id,))
    return outcome_of(row, member_id, key)


async def _redeem_in_python(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    item_id: int,
    *,
    key: str,
    now: datetime,
    expected_points: int | None = None,
) -> Redeemed | Refusal:
    """``redeem`` in statements from Python: SQLite's path, and on PostgreSQL what
    ``redeem_reward`` is tested against (tests/models/test_rewards_in_db.py)."""
    await write_first(session, RewardItem, item_id)
    await lock_members(session, (member_id,))
    # One read after the member's lock (so the limit, the key and the lots are exact).
    params = {
        "member_id": member_id,
        "openid": None,
        "item_id": item_id,
        "month_start": period_start("month", now, rules),
        "year_start": period_start("year", now, rules),
        "key": key,
    }
    rows = (await (await session.connection()).execute(_REDEEM_READ, params)).all()
    if not rows:
        raise NoResultFound(f"no member {member_id}")
    head = rows[0]
    balance = int(head.points_balance)
    if head.earlier_id is not None:
        if head.earlier_member_id != member_id or head.earlier_item_id != item_id:
            raise KeyConflict(f"idempotency key {key!r} redeemed something else")
        return Redeemed(
            head.earlier_id,
            reward_of(head),
            head.earlier_points,
            head.earlier_cash_fen,
            balance,
            head.earlier_status,
            head.coupon_code,
            head.coupon_valid_until,
            head.earlier_pickup_code,
            replayed=True,
        )
    if head.id is None:
        return Refusal("unknown")
    item = reward_of(head)
    refusal = closed_to(item, head.tier, now, int(head.used))
    if refusal is not None:
        return refusal
    if expected_points is not None and expected_points != item.points_price:
        return Refusal("price_changed")
    if balance < item.points_price:
        return Refusal("not_enough_points", shortfall=item.points_price - balance)
    lots = [OpenLot.of(row) for row in rows if row.lot_id is not None]
    savepoint = await session.begin_nested()
    try:
        outcome = await _take(session, rules, member_id, item, lots, key, now)
    except BaseException:
        await savepoint.rollback()
        raise
    if isinstance(outcome, Redeemed):
        await savepoint.commit()
        return outcome
    await savepoint.rollback()  # nothing of a refused redemption stays
    return outcome or Refusal("sold_out")


async def _take(
    session: AsyncSession,
    rules: ProgrammeRules,
    member_id: int,
    item: Reward,
    lots: list[OpenLot],
    key: str,
    now: datetime,
) -> Redeemed | Refusal | None:
    """Debit, issue and record the redemption, then take one from the stock; None when the
    stock ran out meanwhile (the caller rolls the savepoint back)."""
    try:
        change = await debit_locked(
            session,
            member_id,
            item.points_price,
            lots,
            kind="redeem",
            reason=f"reward:{item.id}",
            key=f"reward:{key}",
            at=now,
        )
    except InsufficientPoints as short:
        return Refusal("not_enough_points", shortfall=short.wanted - short.balance)
    coupon_id = coupon_code = coupon_valid_until = pickup_code = None
    if item.kind == "coupon" and item.coupon_kind:
        issued = await issue_coupon(
            session,
            rules,
            member_id,
            item.coupon_kind,
            reason=f"reward:{item.id}",
            key=f"reward:{key}",
            now=now,
        )
        coupon = issued.coupon
        coupon_id, coupon_code, coupon_valid_until = coupon.id, coupon.code, coupon.valid_until
        status = "issued"
    else:
        pickup_code, status = _pickup_code(), "pending"
    connection = await session.connection()
    redemption_id = (
        await connection.execute(
            _INSERT_REDEMPTION,
            {
                "item_id": item.id,
                "member_id": member_id,
                "idempotency_key": key,
                "points": item.points_price,
                "cash_fen": item.cash_fen,
                "status": status,
                "coupon_id": coupon_id,
                "pickup_code": pickup_code,
                "entry_id": change.entry_id,
                "drawn": [list(part) for part in change.drawn],
                "created_at": now,
            },
        )
    ).scalar_one()
    if item.stock is not None:
        taken = await connection.execute(_TAKE_ONE, {"item_id": item.id})
        left = taken.scalar_one_or_none()
        if left is None:
            return None
        item = replace(item, stock=left)
    return Redeemed(
        redemption_id,
        item,
        item.points_price,
        item.cash_fen,
        change.balance_after,
        status,
        coupon_code,
        coupon_valid_until,
        pickup_code,
    )
