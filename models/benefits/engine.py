"""The machinery every benefit rule shares: the settings in force (config with the marketers'
overrides), budgets, and granting — to one member (a triggered rule) or set-based to a batch
of members (a periodic or segment rule).

Idempotency: a grant is unique per (rule, period, member); its coupon and ledger entry carry
the key ``benefit:<rule>:<period>:<member>``, so a rerun, a retry or a second scheduler
issues nothing twice.

Lock order (models/ledger.py): member rows first, then the rule's budget row. A triggered
grant runs inside a transaction that already holds its member (or takes it first); a
set-based run that credits points locks its batch's members before the budget row; one that
issues only coupons touches no member row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    JSON,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from models.base import dialect_insert
from models.benefit_settings import BenefitsConfig, Boost, Gift
from models.benefits.tables import BenefitBudget, BenefitGrant, BenefitOverride
from models.binding import ALPHABET
from models.coupons import CODE_ATTEMPTS, CODE_LENGTH, Coupon, issue_coupon
from models.deliveries import Delivery
from models.events import MemberEvent, record_event
from models.ledger import (
    POINTS_CHANGED_EVENT,
    LedgerEntry,
    PointLot,
    credit,
    lock_members,
    note_points_changed,
)
from models.members import Member
from models.orders import lot_expiry
from models.rules import ProgrammeRules

# The member event a triggered grant comes with (its push: bot/push/notifications.py).
BENEFIT_GRANTED = "benefit_granted"
Unit = Literal["coupons", "points"]


def grant_key(rule: str, period: str, member_id: int) -> str:
    """The idempotency key of a grant's coupon and ledger entry."""
    return f"benefit:{rule}:{period}:{member_id}"


def _key_expression(rule: str, period: str, member_id: Any) -> Any:
    return literal(f"benefit:{rule}:{period}:") + cast(member_id, String)


# Settings ------------------------------------------------------------------------------------


def rule_settings(config: BenefitsConfig, code: str) -> BaseModel:
    """The settings of rule ``code`` (``boost:<key>`` for a dated boost); KeyError if none."""
    if code.startswith("boost:"):
        return config.boosts[code.removeprefix("boost:")]
    if code not in BenefitsConfig.model_fields or code == "boosts":
        raise KeyError(code)
    return getattr(config, code)  # type: ignore[no-any-return]


def rule_codes(config: BenefitsConfig) -> list[str]:
    """Every rule's code, in the order the console lists them."""
    names = [name for name in BenefitsConfig.model_fields if name != "boosts"]
    return names + [f"boost:{key}" for key in config.boosts]


def with_settings(
    rules: ProgrammeRules, config: BenefitsConfig, code: str, changes: dict[str, Any]
) -> BenefitsConfig:
    """``config`` with rule ``code``'s settings changed; ValueError naming what is wrong
    (an unknown setting, a bad amount, a coupon kind or tier that does not exist)."""
    current = rule_settings(config, code)
    try:
        changed = type(current).model_validate(current.model_dump() | changes)
        if code.startswith("boost:"):
            boosts = config.boosts | {code.removeprefix("boost:"): changed}
            result = BenefitsConfig.model_validate(config.model_dump() | {"boosts": boosts})
        else:
            result = BenefitsConfig.model_validate(config.model_dump() | {code: changed})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
    problems = result.problems(
        {k.code for k in rules.coupons},
        {t.code for t in rules.tiers},
        set(config.segment_entered.by_segment) | _SEGMENTS,
    )
    if problems:
        raise ValueError("; ".join(problems))
    return result


_SEGMENTS = {"core", "important", "potential", "at_risk", "dormant", "other"}


async def overrides(db: AsyncSession | AsyncConnection) -> dict[str, dict[str, Any]]:
    """The stored overrides by rule code."""
    table = BenefitOverride.__table__
    rows = await db.execute(select(table.c.rule, table.c.settings))
    return {rule: dict(settings) for rule, settings in rows}


async def active_benefits(
    db: AsyncSession | AsyncConnection, rules: ProgrammeRules
) -> BenefitsConfig:
    """The benefit settings in force: the configured ones with the stored overrides laid over
    them. An override the configuration no longer accepts (its rule or coupon kind gone) is
    left out rather than breaking every rule."""
    config = rules.benefits
    for code, changes in (await overrides(db)).items():
        try:
            config = with_settings(rules, config, code, changes)
        except (KeyError, ValueError):
            continue
    return config


def budget_unit(settings: BaseModel) -> Unit:
    """What a rule's budget counts: coupons if any of its gifts is a coupon, else points."""
    gifts: list[Gift] = []
    if isinstance(settings, Gift):
        gifts.append(settings)
    for name in ("by_tier", "by_segment"):
        gifts += list(getattr(settings, name, {}).values())
    return "coupons" if any(g.coupon for g in gifts) else "points"


# Budgets -------------------------------------------------------------------------------------


def month_of(rules: ProgrammeRules, now: datetime) -> str:
    """The local calendar month a grant at ``now`` counts against (2026-12)."""
    return f"{now.astimezone(rules.zone):%Y-%m}"


def month_bounds(rules: ProgrammeRules, month: str) -> tuple[datetime, datetime]:
    """The UTC instants a local month ``YYYY-MM`` starts and ends at."""
    first = date.fromisoformat(f"{month}-01")
    following = (first + timedelta(days=32)).replace(day=1)
    return (
        datetime.combine(first, time(), rules.zone),
        datetime.combine(following, time(), rules.zone),
    )


def _used_expression(unit: Unit) -> Any:
    grants = BenefitGrant.__table__.c
    if unit == "coupons":
        return func.count(case((grants.coupon_kind.is_not(None), 1)))
    return func.coalesce(func.sum(grants.points), 0)


async def issued_this_month(
    session: AsyncSession, rules: ProgrammeRules, code: str, unit: Unit, now: datetime
) -> int:
    """What rule ``code`` has issued this month (coupons or points; holdouts excluded)."""
    start, end = month_bounds(rules, month_of(rules, now))
    grants = BenefitGrant.__table__.c
    value = await session.scalar(
        select(_used_expression(unit)).where(
            grants.rule == code,
            grants.holdout.is_(False),
            grants.created_at >= start,
            grants.created_at < end,
        )
    )
    return int(value or 0)


async def _ensure_budget_row(
    session: AsyncSession, rules: ProgrammeRules, code: str, unit: Unit, month: str
) -> None:
    """The month's counter, started from what the rule already issued that month (a budget
    set mid-month counts the grants before it)."""
    start, end = month_bounds(rules, month)
    grants = BenefitGrant.__table__.c
    used = (
        select(_used_expression(unit))
        .where(
            grants.rule == code,
            grants.holdout.is_(False),
            grants.created_at >= start,
            grants.created_at < end,
        )
        .scalar_subquery()
    )
    table = BenefitBudget.__table__
    stmt = dialect_insert(session)(table).from_select(
        ["rule", "month", "used"],
        select(literal(code), literal(month), func.coalesce(used, 0)),
    )
    await session.execute(stmt.on_conflict_do_nothing())


async def take_budget(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    unit: Unit,
    budget: int,
    amount: int,
    now: datetime,
) -> bool:
    """Use ``amount`` of the rule's monthly ``budget`` (0: none set, always True); False,
    changing nothing, when that would overspend it. The counter row's lock serializes
    concurrent grants of a budgeted rule until their transactions end."""
    if budget <= 0 or amount <= 0:
        return True
    month = month_of(rules, now)
    await _ensure_budget_row(session, rules, code, unit, month)
    table = BenefitBudget.__table__
    taken = await session.scalar(
        update(table)
        .where(table.c.rule == code, table.c.month == month, table.c.used + amount <= budget)
        .values(used=table.c.used + amount)
        .returning(table.c.used)
    )
    return taken is not None


async def budget_left(
    session: AsyncSession, rules: ProgrammeRules, code: str, unit: Unit, budget: int, now: datetime
) -> int | None:
    """What is left of the rule's budget this month, its counter locked until the
    transaction ends (None: no budget set)."""
    if budget <= 0:
        return None
    month = month_of(rules, now)
    await _ensure_budget_row(session, rules, code, unit, month)
    table = BenefitBudget.__table__
    query = select(table.c.used).where(table.c.rule == code, table.c.month == month)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    used = int(await session.scalar(query) or 0)
    return max(budget - used, 0)


async def _use_budget(
    session: AsyncSession, rules: ProgrammeRules, code: str, amount: int, now: datetime
) -> None:
    table = BenefitBudget.__table__
    await session.execute(
        update(table)
        .where(table.c.rule == code, table.c.month == month_of(rules, now))
        .values(used=table.c.used + amount)
    )


# Granting to one member ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granted:
    """What a triggered grant gave: the coupon (kind, code, last valid instant) and points."""

    rule: str
    coupon_kind: str | None
    coupon_code: str | None
    valid_until: datetime | None
    points: int
    balance: int | None


async def grant(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    settings: BaseModel,
    member_id: int,
    period: str,
    gift: Gift,
    *,
    reason: str,
    now: datetime,
    gift_key: str = "",
    announce: bool = True,
) -> Granted | None:
    """Give ``gift`` to the member for ``period`` under rule ``code``, in the caller's
    transaction: None when the rule is paused, already granted this period, or its budget
    is spent. ``announce`` records the ``benefit_granted`` event its push is planned from."""
    if not getattr(settings, "enabled", False) or gift.empty:
        return None
    await lock_members(session, (member_id,))
    if not await claim(session, rules, code, settings, member_id, period, gift, now, gift_key):
        return None
    key = grant_key(code, period, member_id)
    coupon = None
    if gift.coupon:
        coupon = (
            await issue_coupon(
                session, rules, member_id, gift.coupon, reason=reason, key=key, now=now
            )
        ).coupon
    balance = None
    if gift.points:
        change = await credit(
            session,
            member_id,
            gift.points,
            kind="bonus",
            reason=reason,
            key=key,
            at=now,
            expires_at=lot_expiry(rules, now),
        )
        balance = change.balance_after
    granted = Granted(
        code,
        coupon.kind if coupon else None,
        coupon.code if coupon else None,
        coupon.valid_until if coupon else None,
        gift.points,
        balance,
    )
    if announce:
        await record_event(session, member_id, BENEFIT_GRANTED, granted_payload(granted), now)
    return granted


async def claim(
    session: AsyncSession,
    rules: ProgrammeRules,
    code: str,
    settings: BaseModel,
    member_id: int,
    period: str,
    gift: Gift,
    now: datetime,
    gift_key: str = "",
) -> bool:
    """Record rule ``code``'s grant of ``gift`` to the member for ``period`` and take it from
    the rule's budget; False (nothing written) when it was granted before or the budget is
    spent. What the gift is, the caller issues (``grant``) or applies (a boost's points)."""
    unit = budget_unit(settings)
    budget = int(getattr(settings, "monthly_budget", 0))
    if budget > 0:
        # Before the grant: the counter starts from the month's grants, not counting this one.
        await _ensure_budget_row(session, rules, code, unit, month_of(rules, now))
    inserted = await session.scalar(
        dialect_insert(session)(BenefitGrant)
        .values(
            rule=code,
            member_id=member_id,
            period=period,
            gift=gift_key,
            coupon_kind=gift.coupon or None,
            points=gift.points,
            holdout=False,
            credited=True,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(BenefitGrant.id)
    )
    if inserted is None:
        return False
    amount = (1 if gift.coupon else 0) if unit == "coupons" else gift.points
    if not await take_budget(session, rules, code, unit, budget, amount, now):
        await session.execute(delete(BenefitGrant).where(BenefitGrant.id == inserted))
        return False
    return True


def granted_payload(granted: Granted) -> dict[str, Any]:
    """A grant as JSON (the event's payload, read back by ``granted_from``)."""
    return {
        "rule": granted.rule,
        "coupon_kind": granted.coupon_kind,
        "coupon_code": granted.coupon_code,
        "valid_until": granted.valid_until.isoformat() if granted.valid_until else None,
        "points": granted.points,
        "balance": granted.balance,
    }


def granted_from(payload: dict[str, Any]) -> Granted:
    """The grant a ``granted_payload`` describes."""
    until = payload.get("valid_until")
    return Granted(
        payload["rule"],
        payload.get("coupon_kind"),
        payload.get("coupon_code"),
        datetime.fromisoformat(until) if until else None,
        int(payload.get("points") or 0),
        payload.get("balance"),
    )


# Granting set-based --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one set-based batch did: grants made (holdouts apart), holdouts recorded, pushes
    planned (their delivery ids, to enqueue once committed), and whether the budget ran out."""

    granted: int
    held_out: int
    delivery_ids: list[int]
    budget_spent: bool


@dataclass(frozen=True, slots=True)
class SetGrant:
    """A set-based grant: rule ``code`` gives ``gift`` for ``period`` to the members
    ``candidates`` selects (a SELECT of one column, member ids, within one batch's range
    ``(after, last]``). ``push`` is the delivery row's purpose, category and payload for every
    member who got something (None: no push)."""

    code: str
    settings: BaseModel
    period: str
    gift: Gift
    gift_key: str
    candidates: Select[Any]
    after: int
    last: int
    reason: str
    holdout_percent: int = 0
    push: tuple[str, str, dict[str, Any]] | None = None


def _holdout_expression(member_id: Any, code: str, percent: int) -> Any:
    """A stable pseudo-random share of members (the same members for a rule every run)."""
    if percent <= 0:
        return literal(False)
    salt = sum(ord(c) for c in code)
    return case(((member_id * 2654435761 + salt) % 100 < percent, literal(True)), else_=False)


def _code_expression(session: AsyncSession) -> Any:
    """A random coupon code of ``CODE_LENGTH`` characters of the binding alphabet, in SQL."""
    size = len(ALPHABET)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    parts = []
    for _ in range(CODE_LENGTH):
        if dialect == "postgresql":
            position = cast(func.floor(func.random() * size), Integer) + 1
        else:
            position = func.abs(func.random()) % size + 1
        parts.append(func.substr(literal(ALPHABET), position, 1, type_=String))
    expression = parts[0]
    for part in parts[1:]:
        expression = expression + part
    return expression


def _json_object(session: AsyncSession, **values: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    build = func.json_build_object if dialect == "postgresql" else func.json_object
    arguments: list[Any] = []
    for name, value in values.items():
        arguments += [literal(name), value]
    return build(*arguments)


async def grant_batch(
    session: AsyncSession, rules: ProgrammeRules, job: SetGrant, now: datetime
) -> BatchOutcome:
    """Grant ``job.gift`` to the batch's candidates in a few statements (INSERT … SELECT):
    grants, coupons, ledger entries, lots and balances, and the pushes. On PostgreSQL a
    batch's points are written in one statement (``_grant_points_at_once``). The caller
    commits."""
    settings = job.settings
    unit = budget_unit(settings)
    budget = int(getattr(settings, "monthly_budget", 0))
    candidates = job.candidates.subquery("candidates")
    member_id = candidates.c[0]
    at_once = bool(job.gift.points) and _dialect(session) == "postgresql"
    if job.gift.points and (budget > 0 or not at_once):
        # Members before the budget row (the lock order), and only those about to be credited.
        ids = list((await session.scalars(select(member_id))).all())
        if not ids:
            return BatchOutcome(0, 0, [], False)
        await lock_members(session, ids)
    left = await budget_left(session, rules, job.code, unit, budget, now)
    chosen = select(member_id.label("member_id")).order_by(member_id)
    if left is not None:
        per = 1 if unit == "coupons" else max(job.gift.points, 1)
        if left // per == 0:
            return BatchOutcome(0, 0, [], True)
        chosen = chosen.limit(left // per)
    if at_once:
        # Locked in id order (the lock order) before their balances move, in the statement.
        chosen = chosen.with_for_update(of=candidates)
    chosen_sq = chosen.cte("chosen") if at_once else chosen.subquery("chosen")
    new_grants = _insert_grants(session, job, chosen_sq, now, credited=at_once)
    delivery_ids: list[int] = []
    if at_once:
        held_out, granted, delivery_ids = await _grant_points_at_once(
            session, rules, job, new_grants, now
        )
    else:
        rows = (await session.execute(new_grants.returning(BenefitGrant.__table__.c.holdout))).all()
        held_out = sum(1 for (h,) in rows if h)
        granted = len(rows) - held_out
    if not granted:
        # Nothing new to issue: grants are written with their coupons and points in one
        # transaction, so no earlier grant is waiting for them.
        return BatchOutcome(0, held_out, [], False)
    if left is not None:
        per = 1 if unit == "coupons" else job.gift.points
        await _use_budget(session, rules, job.code, granted * per, now)
    g = BenefitGrant.__table__.c
    in_batch = and_(
        g.rule == job.code,
        g.period == job.period,
        g.member_id > job.after,
        g.member_id <= job.last,
        g.gift == job.gift_key,
        g.holdout.is_(False),
    )
    if job.gift.coupon:
        await _issue_coupons(session, rules, job, in_batch, now)
    if not at_once:
        if job.gift.points:
            await _credit_points(session, rules, job, in_batch, now)
        if job.push is not None:
            delivery_ids = await _plan_pushes(session, job, in_batch, now)
    # Spent: what is left cannot pay for one more gift.
    per_gift = 1 if unit == "coupons" else max(job.gift.points, 1)
    spent = left is not None and left - granted * per_gift < per_gift
    return BatchOutcome(granted, held_out, delivery_ids, spent)


def _insert_grants(
    session: AsyncSession, job: SetGrant, chosen: Any, now: datetime, *, credited: bool
) -> Any:
    """The INSERT of the grant rows of the members ``chosen`` selects (a grant made before is
    left alone); ``credited``: their points are written in the same statement."""
    grants = BenefitGrant.__table__
    holdout = _holdout_expression(chosen.c.member_id, job.code, job.holdout_percent)
    return (
        dialect_insert(session)(grants)
        .from_select(
            [
                "rule",
                "member_id",
                "period",
                "gift",
                "coupon_kind",
                "points",
                "holdout",
                "credited",
                "created_at",
            ],
            select(
                literal(job.code),
                chosen.c.member_id,
                literal(job.period),
                literal(job.gift_key),
                # A holdout is recorded with what it would have got: nothing.
                case((holdout, None), else_=literal(job.gift.coupon or None, String)),
                case((holdout, 0), else_=literal(job.gift.points)),
                holdout,
                # Holdouts get no points: nothing to credit.
                case((holdout, literal(True)), else_=literal(credited or job.gift.points == 0)),
                literal(now, grants.c.created_at.type),
            )
            .select_from(chosen)
            # SQLite reads "… FROM x ON CONFLICT" as a join without a WHERE in between.
            .where(literal_column("1") == 1),
        )
        .on_conflict_do_nothing()
    )


async def _grant_points_at_once(
    session: AsyncSession, rules: ProgrammeRules, job: SetGrant, new_grants: Any, now: datetime
) -> tuple[int, int, list[int]]:
    """PostgreSQL: the batch's grants, balances, ledger entries, lots, points events and
    pushes in one statement of data-modifying CTEs, each step reading the rows the one
    before returned (no second look-up of the grants, entries or members). Returns the
    holdouts and grants made and the new delivery ids."""
    g = BenefitGrant.__table__.c
    members = Member.__table__
    grants = new_grants.returning(g.member_id, g.points, g.holdout).cte("grants")
    credited = (
        update(members)
        .where(members.c.id == grants.c.member_id, grants.c.holdout.is_(False))
        .values(points_balance=members.c.points_balance + grants.c.points)
        .returning(
            members.c.id.label("member_id"),
            grants.c.points,
            members.c.points_balance.label("balance"),
        )
        .cte("credited")
    )
    entries_table = LedgerEntry.__table__
    entries = (
        insert(entries_table)
        .from_select(
            _ENTRY_COLUMNS,
            _entry_rows(job, credited.c.member_id, credited.c.points, credited.c.balance, now),
        )
        .returning(entries_table.c.id, entries_table.c.member_id, entries_table.c.points)
        .cte("entries")
    )
    lots = (
        insert(PointLot.__table__)
        .from_select(
            _LOT_COLUMNS,
            _lot_rows(rules, entries.c.member_id, entries.c.id, entries.c.points, now),
        )
        .returning(PointLot.__table__.c.id)
        .cte("lots")
    )
    events = (
        insert(MemberEvent.__table__)
        .from_select(
            _EVENT_COLUMNS,
            _event_rows(
                session, job, credited.c.member_id, credited.c.points, credited.c.balance, now
            ),
        )
        .returning(MemberEvent.__table__.c.id)
        .cte("events")
    )
    outputs = [
        select(func.count()).select_from(grants).where(grants.c.holdout).scalar_subquery(),
        select(func.count())
        .select_from(grants)
        .where(grants.c.holdout.is_(False))
        .scalar_subquery(),
        select(func.array_agg(credited.c.member_id)).scalar_subquery(),
        # Named so the statement carries them: every CTE runs, read or not.
        select(func.count()).select_from(lots).scalar_subquery(),
        select(func.count()).select_from(events).scalar_subquery(),
    ]
    if job.push is not None:
        purpose, category, payload = job.push
        recipients = select(grants.c.member_id).where(grants.c.holdout.is_(False))
        pushes = (
            _plan_set_insert(
                session, recipients, f"{purpose}:{job.period}:", purpose, category, payload, now
            )
            .returning(Delivery.__table__.c.id)
            .cte("pushes")
        )
        outputs.append(select(func.array_agg(pushes.c.id)).scalar_subquery())
    row = (await session.execute(select(*outputs))).one()
    note_points_changed(session, row[2] or ())
    delivery_ids = list(row[5] or ()) if job.push is not None else []
    return int(row[0]), int(row[1]), delivery_ids


async def _issue_coupons(
    session: AsyncSession, rules: ProgrammeRules, job: SetGrant, in_batch: Any, now: datetime
) -> None:
    kind = rules.coupon_kind(job.gift.coupon)
    if kind is None:
        raise ValueError(f"no coupon kind {job.gift.coupon!r} is configured")
    g = BenefitGrant.__table__.c
    coupons = Coupon.__table__
    key = _key_expression(job.code, job.period, g.member_id)
    missing = ~exists().where(coupons.c.idempotency_key == key)
    columns = [
        "code",
        "member_id",
        "kind",
        "status",
        "reason",
        "idempotency_key",
        "issued_at",
        "valid_from",
        "valid_until",
    ]
    until = now + timedelta(days=kind.valid_days)
    for _ in range(CODE_ATTEMPTS):
        query = select(
            _code_expression(session),
            g.member_id,
            literal(kind.code),
            literal("issued"),
            literal(job.reason[:200]),
            key,
            literal(now, coupons.c.issued_at.type),
            literal(now, coupons.c.valid_from.type),
            literal(until, coupons.c.valid_until.type),
        ).where(in_batch, missing)
        await session.execute(
            dialect_insert(session)(coupons).from_select(columns, query).on_conflict_do_nothing()
        )
        # A random code already taken leaves its grant without a coupon: draw again for those.
        left = await session.scalar(select(func.count()).where(in_batch, missing))
        if not left:
            return
    raise RuntimeError(f"no free coupon codes after {CODE_ATTEMPTS} attempts")


_ENTRY_COLUMNS = [
    "member_id",
    "kind",
    "points",
    "balance_after",
    "reason",
    "idempotency_key",
    "created_at",
]
_LOT_COLUMNS = [
    "member_id",
    "entry_id",
    "amount",
    "remaining",
    "earned_at",
    "expires_at",
    "expired_points",
]
_EVENT_COLUMNS = ["member_id", "kind", "payload", "created_at"]


def _entry_rows(job: SetGrant, member_id: Any, points: Any, balance: Any, now: datetime) -> Any:
    """The ledger entries (``_ENTRY_COLUMNS``) of the grants' points, keyed by the grant."""
    return select(
        member_id,
        literal("bonus"),
        points,
        balance,
        literal(job.reason[:200]),
        _key_expression(job.code, job.period, member_id),
        literal(now, LedgerEntry.__table__.c.created_at.type),
    )


def _lot_rows(
    rules: ProgrammeRules, member_id: Any, entry_id: Any, points: Any, now: datetime
) -> Any:
    """The lots (``_LOT_COLUMNS``) of the grants' ledger entries: all of it remaining."""
    lots = PointLot.__table__
    return select(
        member_id,
        entry_id,
        points,
        points,
        literal(now, lots.c.earned_at.type),
        literal(lot_expiry(rules, now), lots.c.expires_at.type),
        literal(0),
    )


def _event_rows(
    session: AsyncSession,
    job: SetGrant,
    member_id: Any,
    points: Any,
    balance: Any,
    now: datetime,
) -> Any:
    """The points events (``_EVENT_COLUMNS``) of the grants' credits."""
    payload = _json_object(
        session,
        points=points,
        balance=balance,
        kind=literal("bonus"),
        reason=literal(job.reason[:200]),
    )
    return select(
        member_id,
        literal(POINTS_CHANGED_EVENT),
        cast(payload, JSON) if _dialect(session) == "postgresql" else payload,
        literal(now, MemberEvent.__table__.c.created_at.type),
    )


async def _credit_points(
    session: AsyncSession, rules: ProgrammeRules, job: SetGrant, in_batch: Any, now: datetime
) -> None:
    """Credit the batch's pending grants (``credited`` false): balances, ledger entries, lots
    and the points events, each one statement; the members are locked already."""
    g = BenefitGrant.__table__.c
    members = Member.__table__
    pending = and_(in_batch, g.credited.is_(False))
    gained = (
        select(g.points)
        .where(g.rule == job.code, g.period == job.period, g.member_id == members.c.id)
        .scalar_subquery()
    )
    changed = (
        await session.execute(
            update(members)
            .where(members.c.id.in_(select(g.member_id).where(pending)))
            .values(points_balance=members.c.points_balance + gained)
            .returning(members.c.id)
        )
    ).all()
    if not changed:
        return
    note_points_changed(session, (row[0] for row in changed))
    with_balance = BenefitGrant.__table__.join(members, members.c.id == g.member_id)
    entries = LedgerEntry.__table__
    await session.execute(
        insert(entries).from_select(
            _ENTRY_COLUMNS,
            _entry_rows(job, g.member_id, g.points, members.c.points_balance, now)
            .select_from(with_balance)
            .where(pending),
        )
    )
    key = _key_expression(job.code, job.period, g.member_id)
    await session.execute(
        insert(PointLot.__table__).from_select(
            _LOT_COLUMNS,
            _lot_rows(rules, entries.c.member_id, entries.c.id, entries.c.points, now)
            .select_from(BenefitGrant.__table__.join(entries, entries.c.idempotency_key == key))
            .where(pending),
        )
    )
    await session.execute(
        insert(MemberEvent.__table__).from_select(
            _EVENT_COLUMNS,
            _event_rows(session, job, g.member_id, g.points, members.c.points_balance, now)
            .select_from(with_balance)
            .where(pending),
        )
    )
    await session.execute(
        update(BenefitGrant.__table__)
        .where(pending)
        .values(credited=True)
        .execution_options(synchronize_session=False)
    )


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


async def _plan_pushes(
    session: AsyncSession, job: SetGrant, in_batch: Any, now: datetime
) -> list[int]:
    assert job.push is not None
    purpose, category, payload = job.push
    g = BenefitGrant.__table__.c
    recipients = select(g.member_id).where(in_batch, g.created_at == now)
    return await plan_set(
        session, recipients, f"{purpose}:{job.period}:", purpose, category, payload, now
    )


async def plan_set(
    session: AsyncSession,
    recipients: Select[Any],
    key_prefix: str,
    purpose: str,
    category: str,
    payload: dict[str, Any],
    now: datetime,
) -> list[int]:
    """Plan the same push to every subscribed follower among ``recipients`` (a SELECT of
    member ids) in one INSERT … SELECT, keyed ``<key_prefix><member id>`` (a key planned
    before is left alone); the new rows' ids, to enqueue once committed."""
    statement = _plan_set_insert(session, recipients, key_prefix, purpose, category, payload, now)
    rows = await session.execute(statement.returning(Delivery.__table__.c.id))
    return [row[0] for row in rows]


def _plan_set_insert(
    session: AsyncSession,
    recipients: Select[Any],
    key_prefix: str,
    purpose: str,
    category: str,
    payload: dict[str, Any],
    now: datetime,
) -> Any:
    """``plan_set``'s INSERT of the deliveries, without its RETURNING."""
    chosen = recipients.subquery("recipients")
    members = Member.__table__
    deliveries = Delivery.__table__
    d = deliveries.c
    query = (
        select(
            literal(key_prefix) + cast(members.c.id, String),
            literal(purpose),
            literal(category),
            members.c.id,
            literal(payload, JSON),
            literal("queued"),
            literal(0),
            literal(now, d.not_before.type),
            literal(now, d.created_at.type),
            literal(now, d.updated_at.type),
        )
        .select_from(chosen.join(members, members.c.id == chosen.c[0]))
        .where(members.c.subscribed.is_(True), members.c.openid.is_not(None))
    )
    return (
        dialect_insert(session)(deliveries)
        .from_select(
            [
                "dedupe_key",
                "purpose",
                "category",
                "member_id",
                "payload",
                "status",
                "attempts",
                "not_before",
                "created_at",
                "updated_at",
            ],
            query,
        )
        .on_conflict_do_nothing()
    )


def boost_for(config: BenefitsConfig, local_day: date) -> tuple[str, Boost] | None:
    """The active boost with the highest multiplier covering ``local_day``, if any."""
    found = [
        (f"boost:{key}", boost)
        for key, boost in config.boosts.items()
        if boost.enabled and boost.applies(local_day.month, local_day.day)
    ]
    return max(found, key=lambda pair: pair[1].multiplier, default=None)
