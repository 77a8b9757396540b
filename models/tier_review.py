"""The periodic tier re-evaluation over all members: the only place a tier goes down.

Set-based, one batch of member ids per transaction. In each batch the members are locked,
each one's earned tier is decided once into a temporary staging table, and the changes are
applied from it: a ``TierChange`` and a ``MemberEvent`` per changed member, then the new
tier on the member row. Deciding once means the log, the events and the rows cannot
disagree, whatever the statements in between see.

Members are judged as of the run's time (the scheduled time, so a late run does what the
on-time one would have), but never below what their purchases earn when their batch is
decided: orders keep arriving while a run works through the batches (or before a late run
starts), and each has already upgraded its member on what it earned. Judging those members
at the run's time alone would undo such an upgrade; the result is instead what an instant
review followed by those orders would have left.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import UTCDateTime, utcnow
from models.events import MemberEvent
from models.members import Member
from models.orders import FUTURE_TOLERANCE, Order
from models.rules import ProgrammeRules
from models.state import set_state
from models.tiers import TOP_SPEND_THRESHOLD, Stats, TierChange, UpgradeGifts, window_start

BATCH = 20_000

# Not in Base.metadata: it is no part of the schema, only a per-transaction scratch table.
_STAGE = Table(
    "tier_review_stage",
    MetaData(),
    Column("member_id", BigInteger().with_variant(sqlite.INTEGER(), "sqlite"), primary_key=True),
    Column("from_tier", String(16), nullable=False),
    Column("to_tier", String(16), nullable=False),
    # Signed: positive for an upgrade.
    Column("levels", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True, slots=True)
class TierReview:
    """What a re-evaluation did, and the top-spender threshold it stored."""

    evaluated: int
    upgraded: int
    downgraded: int
    unchanged: int
    top_spend_threshold_fen: int | None


async def member_id_ranges(session: AsyncSession, size: int) -> AsyncIterator[tuple[int, int]]:
    """Consecutive ranges ``(after, last]`` of member ids, each holding up to ``size`` members.

    Each bound is one indexed query, so no list of ids is held; members created meanwhile with
    higher ids are covered too. Safe to commit between steps.
    """
    first = await session.scalar(select(func.min(Member.id)))
    if first is None:
        return
    after = first - 1
    while True:
        later = select(Member.id).where(Member.id > after).order_by(Member.id)
        last = await session.scalar(later.offset(size - 1).limit(1))
        if last is None:
            # Fewer than ``size`` left: the last range ends at the highest id, if any remain.
            last = await session.scalar(select(func.max(Member.id)).where(Member.id > after))
            if last is None:
                return
        yield after, last
        after = last


def _window_stats(rules: ProgrammeRules, now: datetime, *criteria: Any) -> Select[Any]:
    """Per member: orders (not fully refunded) and net spend in the trailing tier window.

    The set-based form of ``models.tiers.member_stats``; ``criteria`` narrow the orders.
    """
    net = Order.amount_fen - Order.refunded_fen
    return (
        select(
            Order.member_id.label("member_id"),
            func.count().label("orders"),
            func.sum(net).label("spend"),
        )
        .where(
            Order.paid_at > window_start(rules, now),
            Order.paid_at <= now,
            net > 0,
            *criteria,
        )
        .group_by(Order.member_id)
    )


def _batch_stats(
    rules: ProgrammeRules, now: datetime, decided: datetime, after: int, last: int
) -> Select[Any]:
    """Per member of ``(after, last]``, in one pass over their orders: orders and net spend in
    the window at ``now`` (``orders``, ``spend``) and in the window at ``decided``, counting
    every order accepted by then (``orders_now``, ``spend_now``; see models.tiers.member_stats).
    ``decided`` is never before ``now``, so the first window starts the earlier."""
    net = Order.amount_fen - Order.refunded_fen
    at_run = Order.paid_at <= now
    at_decision = and_(
        Order.paid_at > window_start(rules, decided),
        Order.paid_at <= decided + FUTURE_TOLERANCE,
    )
    return (
        select(
            Order.member_id.label("member_id"),
            func.count(case((at_run, 1))).label("orders"),
            func.sum(case((at_run, net), else_=0)).label("spend"),
            func.count(case((at_decision, 1))).label("orders_now"),
            func.sum(case((at_decision, net), else_=0)).label("spend_now"),
        )
        .where(
            Order.member_id > after,
            Order.member_id <= last,
            Order.paid_at > window_start(rules, now),
            net > 0,
        )
        .group_by(Order.member_id)
    )


async def _compute_top_spend_threshold(
    session: AsyncSession, rules: ProgrammeRules, now: datetime
) -> int | None:
    """The window spend at the top ``top_spend_percent`` of spenders (highest such tier).

    None when no tier has the rule or nobody spent anything in the window.
    """
    percents = [t.top_spend_percent for t in rules.tiers if t.top_spend_percent is not None]
    if not percents:
        return None
    # Every order counted has a positive net amount, so everyone listed spent more than 0.
    spend = _window_stats(rules, now).subquery()
    spenders = await session.scalar(select(func.count()).select_from(spend))
    if not spenders:
        return None
    # Decimal of the setting's text: 0.7% of 1000 is exactly 7, not float's 7.000000000000001.
    rank = math.ceil(Decimal(str(percents[-1])) * spenders / 100)
    value = await session.scalar(
        select(spend.c.spend).order_by(spend.c.spend.desc()).offset(rank - 1).limit(1)
    )
    return int(value)


def _earned_tier(
    rules: ProgrammeRules,
    orders: ColumnElement[int],
    spend: ColumnElement[int],
    threshold: int | None,
) -> ColumnElement[str]:
    """``models.tiers.qualifying_tier`` as SQL: the highest tier any of whose rules is met."""
    whens = []
    for tier in reversed(rules.tiers[1:]):
        reached = [orders >= tier.min_orders]
        if tier.min_spend_fen is not None:
            reached.append(spend >= tier.min_spend_fen)
        if tier.top_spend_percent is not None and threshold is not None:
            # The threshold is a positive spend, so this also requires spending something.
            reached.append(spend >= threshold)
        whens.append((or_(*reached), literal(tier.code)))
    lowest = literal(rules.tiers[0].code)
    return case(*whens, else_=lowest) if whens else lowest


def _rank(rules: ProgrammeRules, code: ColumnElement[str]) -> ColumnElement[int]:
    # An unknown code ranks lowest, as ``ProgrammeRules.tier`` treats it.
    return case({t.code: i for i, t in enumerate(rules.tiers)}, value=code, else_=0)


def _event_payload(dialect: str) -> ColumnElement[Any]:
    build = func.json_build_object if dialect == "postgresql" else func.json_object
    return build(
        literal_column("'from'"),
        _STAGE.c.from_tier,
        literal_column("'to'"),
        _STAGE.c.to_tier,
        literal_column("'levels'"),
        func.abs(_STAGE.c.levels),
    )


async def _upgrades_with_gifts(session: AsyncSession, now: datetime, gifts: UpgradeGifts) -> None:
    """The batch's upgrades get what an order's upgrade gets: the tier's gift (and the growth
    reward for a jump), granted by ``gifts`` under the batch's locks, told in each upgrade's
    event as an order's upgrade tells it. One member at a time: a review upgrades few members
    (most of its changes are downgrades), and each grant is the triggered grant with its own
    once-a-year key and budget."""
    upgrades = (
        await session.execute(
            select(_STAGE.c.member_id, _STAGE.c.from_tier, _STAGE.c.to_tier, _STAGE.c.levels)
            .where(_STAGE.c.levels > 0)
            .order_by(_STAGE.c.member_id)
        )
    ).all()
    events = [
        {
            "member_id": member_id,
            "kind": "tier_upgraded",
            "payload": {
                "from": from_tier,
                "to": to_tier,
                "levels": levels,
                "gifts": await gifts(member_id, to_tier, levels),
            },
            "created_at": now,
        }
        for member_id, from_tier, to_tier, levels in upgrades
    ]
    if events:
        await session.execute(MemberEvent.__table__.insert(), events)


async def _review_batch(
    session: AsyncSession,
    rules: ProgrammeRules,
    now: datetime,
    threshold: int | None,
    after: int,
    last: int,
    clock: Callable[[], datetime],
    gifts: UpgradeGifts | None,
) -> tuple[int, int, int]:
    """Re-evaluate members ``(after, last]`` and commit; returns (evaluated, up, down)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # Take the write lock before reading, so no other writer can commit between the
        # decisions and their application (and the first write cannot fail as stale).
        await session.execute(text("BEGIN IMMEDIATE"))
    in_batch = and_(Member.id > after, Member.id <= last)
    # On PostgreSQL, lock the members: an order's insert waits on the row through its foreign
    # key, and an on-order upgrade writes it, so neither lands between decide and apply.
    # (SQLite renders no FOR UPDATE; its write lock already covers this.)
    locked = select(Member.id).where(in_batch).order_by(Member.id).with_for_update().subquery()
    evaluated = await session.scalar(select(func.count()).select_from(locked)) or 0

    # Read once the batch is locked: no order of these members can land after it.
    decided = max(now, clock())
    stats = _batch_stats(rules, now, decided, after, last).subquery()
    judged = (
        select(
            Member.id.label("member_id"),
            Member.tier.label("from_tier"),
            _earned_tier(
                rules,
                func.coalesce(stats.c.orders, 0),
                func.coalesce(stats.c.spend, 0),
                threshold,
            ).label("at_run"),
            _earned_tier(
                rules,
                func.coalesce(stats.c.orders_now, 0),
                func.coalesce(stats.c.spend_now, 0),
                threshold,
            ).label("at_decision"),
        )
        .outerjoin(stats, stats.c.member_id == Member.id)
        .where(in_batch)
        .subquery()
    )
    higher = _rank(rules, judged.c.at_decision) > _rank(rules, judged.c.at_run)
    earned = select(
        judged.c.member_id,
        judged.c.from_tier,
        case((higher, judged.c.at_decision), else_=judged.c.at_run).label("to_tier"),
    ).subquery()
    await session.run_sync(lambda sync: _STAGE.create(sync.connection()))
    await session.execute(
        _STAGE.insert().from_select(
            ["member_id", "from_tier", "to_tier", "levels"],
            select(
                earned.c.member_id,
                earned.c.from_tier,
                earned.c.to_tier,
                _rank(rules, earned.c.to_tier) - _rank(rules, earned.c.from_tier),
            ).where(earned.c.to_tier != earned.c.from_tier),
        )
    )
    at = literal(now, UTCDateTime)
    await session.execute(
        TierChange.__table__.insert().from_select(
            ["member_id", "from_tier", "to_tier", "reason", "created_at"],
            select(
                _STAGE.c.member_id,
                _STAGE.c.from_tier,
                _STAGE.c.to_tier,
                literal("reevaluation"),
                at,
            ),
        )
    )
    kind = case((_STAGE.c.levels > 0, literal("tier_upgraded")), else_=literal("tier_downgraded"))
    await session.execute(
        MemberEvent.__table__.insert().from_select(
            ["member_id", "kind", "payload", "created_at"],
            select(_STAGE.c.member_id, kind, _event_payload(dialect), at).where(
                _STAGE.c.levels <= 0 if gifts is not None else literal(True)
            ),
        )
    )
    if gifts is not None:
        await _upgrades_with_gifts(session, now, gifts)
    members = Member.__table__
    await session.execute(
        update(members)
        .where(members.c.id == _STAGE.c.member_id)
        .values(tier=_STAGE.c.to_tier, tier_since=now)
    )
    upgraded, downgraded = (
        await session.execute(
            select(
                func.count(case((_STAGE.c.levels > 0, 1))),
                func.count(case((_STAGE.c.levels <= 0, 1))),
            )
        )
    ).one()
    await session.run_sync(lambda sync: _STAGE.drop(sync.connection()))
    await session.commit()
    return evaluated, upgraded, downgraded


async def reevaluate_tiers(
    session: AsyncSession,
    rules: ProgrammeRules,
    now: datetime,
    *,
    batch: int = BATCH,
    clock: Callable[[], datetime] = utcnow,
    gifts: UpgradeGifts | None = None,
) -> TierReview:
    """Give every member the highest tier their trailing window earns, upgrades and downgrades.

    First stores the new top-spender threshold (used by on-order upgrades from then on), then
    reviews ``batch`` members per transaction. A member is judged on the window ending
    ``now``, or, if higher, on their purchases when their batch is decided (``clock``): an
    order after ``now`` has already upgraded them, and the review must not undo that. Each
    change writes a ``TierChange`` (reason ``reevaluation``), a
    ``tier_upgraded``/``tier_downgraded`` event and ``tier_since = now``. Commits the session
    (first whatever it held, then each batch). A rerun with the same data changes nothing.
    Core statements: Member objects already loaded are not refreshed. ``gifts`` (bound to
    ``session``, as for an order's upgrade): what an upgrade brings, granted in its batch and
    told in its event; without it upgrades bring nothing.
    """
    threshold = await _compute_top_spend_threshold(session, rules, now)
    await set_state(session, TOP_SPEND_THRESHOLD, threshold)
    await session.commit()
    evaluated = upgraded = downgraded = 0
    async for after, last in member_id_ranges(session, batch):
        seen, up, down = await _review_batch(
            session, rules, now, threshold, after, last, clock, gifts
        )
        evaluated, upgraded, downgraded = evaluated + seen, upgraded + up, downgraded + down
    return TierReview(
        evaluated=evaluated,
        upgraded=upgraded,
        downgraded=downgraded,
        unchanged=evaluated - upgraded - downgraded,
        top_spend_threshold_fen=threshold,
    )


async def tier_holders_stats(
    session: AsyncSession, rules: ProgrammeRules, at: datetime, now: datetime, batch: int = 1000
) -> AsyncIterator[list[tuple[int, str, Stats]]]:
    """Subscribed members above the lowest tier with their purchases in the tier window as it
    will stand at ``at`` (orders up to ``now``: the future has none yet), streamed in batches
    of (member id, tier, stats) — who would drop if the re-evaluation ran at ``at``."""
    stats = _window_stats(rules, at, Order.paid_at <= now).subquery()
    query = (
        select(
            Member.id,
            Member.tier,
            func.coalesce(stats.c.orders, 0),
            func.coalesce(stats.c.spend, 0),
        )
        .outerjoin(stats, stats.c.member_id == Member.id)
        .where(
            Member.tier != rules.tiers[0].code,
            Member.subscribed.is_(True),
            Member.openid.is_not(None),
        )
        .order_by(Member.id)
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield [(mid, tier, Stats(int(orders), int(spend))) for mid, tier, orders, spend in rows]
