"""Campaign audiences: a tree of conditions on members, compiled to one SQL WHERE clause.

    {"all": [{"field": "tier", "op": "in", "value": ["gold", "diamond"]},
             {"any": [{"field": "points", "op": "gte", "value": 1000},
                      {"field": "last_purchase", "op": "before", "value": "2026-06-01"}]}]}

Fields: ``tier``, ``segment`` (``in``), ``tag`` (``has_any``), ``birthday_month`` (``in``,
1-12), ``points`` (``gte``/``lte``), ``last_purchase`` (``before``/``after`` a local date;
``before`` means bought, but not since), ``subscribed_since`` (``before``/``after``).

What members buy, over the last ``months`` months (1-36, required on these fields; orders
refunded in full do not count): ``bought_category`` and ``bought_channel`` (``in``: an order
in one of these categories / through one of these channels, e.g. 「近6个月买过彩妆」 is
``{"field": "bought_category", "op": "in", "value": ["彩妆"], "months": 6}``), ``order_count``
and ``spend`` (``gte``/``lte``; spend in fen, net of refunds; a range is two conditions).

Groups nest with ``all`` (AND) and ``any`` (OR). Every audience is also limited to members
who follow the account. The compiled clause is evaluated by the database over all members at
once: counting a million takes one statement, not a loop. The purchase conditions are an
``EXISTS`` over orders (a semi-join, helped by ``ix_orders_category_paid_at``) or one grouped
pass over the window's orders (the covering ``ix_orders_member_window``), never a query per
member.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    extract,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from models.deliveries import Delivery
from models.members import Member
from models.orders import Order

MAX_DEPTH = 4
MAX_CONDITIONS = 50
MAX_MONTHS = 36
# Conditions on what members bought, each over a window of ``months``.
PURCHASE_FIELDS = ("bought_category", "bought_channel", "order_count", "spend")


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Node):
    """One test on a member."""

    field: Literal[
        "tier",
        "segment",
        "tag",
        "birthday_month",
        "points",
        "last_purchase",
        "subscribed_since",
        "bought_category",
        "bought_channel",
        "order_count",
        "spend",
    ]
    op: Literal["in", "has_any", "gte", "lte", "before", "after"]
    value: list[str] | list[int] | int | date
    months: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MONTHS,
        description="the window of a purchase condition: the last this many months",
    )

    @model_validator(mode="after")
    def _op_fits_field(self) -> Condition:
        allowed = {
            "tier": ("in", list),
            "segment": ("in", list),
            "tag": ("has_any", list),
            "birthday_month": ("in", list),
            "points": (("gte", "lte"), int),
            "last_purchase": (("before", "after"), date),
            "subscribed_since": (("before", "after"), date),
            "bought_category": ("in", list),
            "bought_channel": ("in", list),
            "order_count": (("gte", "lte"), int),
            "spend": (("gte", "lte"), int),
        }[self.field]
        ops, kind = allowed
        ops = ops if isinstance(ops, tuple) else (ops,)
        if self.op not in ops:
            raise ValueError(f"{self.field} takes op {' or '.join(ops)}")
        if not isinstance(self.value, kind) or isinstance(self.value, bool):
            raise ValueError(f"{self.field} needs a {kind.__name__} value")
        if isinstance(self.value, list) and not 1 <= len(self.value) <= 100:
            raise ValueError(f"{self.field} needs 1 to 100 values")
        if self.field == "birthday_month" and not all(
            isinstance(m, int) and 1 <= m <= 12
            for m in self.value  # type: ignore[union-attr]
        ):
            raise ValueError("birthday_month values are months, 1 to 12")
        if (self.months is None) == (self.field in PURCHASE_FIELDS):
            raise ValueError(
                f"{self.field} needs months (1 to {MAX_MONTHS})"
                if self.field in PURCHASE_FIELDS
                else f"{self.field} takes no months"
            )
        if self.field in ("bought_category", "bought_channel") and not all(
            isinstance(v, str) and 1 <= len(v) <= 64
            for v in self.value  # type: ignore[union-attr]
        ):
            raise ValueError(f"{self.field} values are names of 1 to 64 characters")
        if self.field in ("order_count", "spend") and self.value < 0:  # type: ignore[operator]
            raise ValueError(f"{self.field} is not negative")
        return self


class Group(_Node):
    """All (AND) or any (OR) of the nodes below."""

    all: list[Node] | None = None
    any: list[Node] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Group:
        if (self.all is None) == (self.any is None):
            raise ValueError("a group has either all or any")
        if not self.nodes:
            raise ValueError("a group needs at least one condition")
        return self

    @property
    def nodes(self) -> list[Node]:
        return self.all if self.all is not None else (self.any or [])


Node = Annotated[Condition | Group, Field(union_mode="left_to_right")]
Group.model_rebuild()


class Audience(BaseModel):
    """An audience definition; ``None`` as the root means every follower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Group | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Audience:
        if self.root is not None:
            depth, count = _size(self.root, 1)
            if depth > MAX_DEPTH or count > MAX_CONDITIONS:
                raise ValueError(
                    f"an audience nests at most {MAX_DEPTH} deep with {MAX_CONDITIONS} conditions"
                )
        return self


def _size(node: Condition | Group, depth: int) -> tuple[int, int]:
    if isinstance(node, Condition):
        return depth, 1
    sizes = [_size(child, depth + 1) for child in node.nodes]
    return max(d for d, _ in sizes), sum(c for _, c in sizes)


@dataclass(frozen=True)
class Compiler:
    """Turns an audience into a WHERE clause on ``members`` (``dialect`` for JSON tags;
    ``now`` ends the purchase conditions' windows)."""

    dialect: str
    zone: ZoneInfo
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def where(self, audience: Audience) -> ColumnElement[bool]:
        followers = and_(Member.subscribed.is_(True), Member.openid.is_not(None))
        if audience.root is None:
            return followers
        return and_(followers, self._node(audience.root))

    def _node(self, node: Condition | Group) -> ColumnElement[bool]:
        if isinstance(node, Group):
            parts = [self._node(child) for child in node.nodes]
            return and_(true(), *parts) if node.all is not None else or_(false(), *parts)
        return self._condition(node)

    def _condition(self, c: Condition) -> ColumnElement[bool]:
        value: Any = c.value
        match c.field:
            case "tier":
                return Member.tier.in_(value)
            case "segment":
                return Member.segment.in_(value)
            case "tag":
                return or_(false(), *(self._has_tag(tag) for tag in value))
            case "birthday_month":
                return extract("month", Member.birthday).in_(value)
            case "points":
                points = Member.points_balance
                return points >= value if c.op == "gte" else points <= value
            case "last_purchase":
                # IN (subquery), not EXISTS: under an OR, PostgreSQL hashes the subquery once
                # instead of probing orders for each member (bench/dashboard.py).
                since = self._start_of(value)
                if c.op == "after":
                    return Member.id.in_(select(Order.member_id).where(Order.paid_at >= since))
                lapsed = (
                    select(Order.member_id)
                    .group_by(Order.member_id)
                    .having(func.max(Order.paid_at) < since)
                )
                return Member.id.in_(lapsed)
            case "subscribed_since":
                since = self._start_of(value)
                column = Member.subscribed_at
                return column >= since if c.op == "after" else column < since
            case "bought_category" | "bought_channel":
                column = Order.category if c.field == "bought_category" else Order.channel
                return exists(
                    select(literal(1)).where(
                        Order.member_id == Member.id,
                        column.in_(value),
                        *self._window(c),
                    )
                )
            case "order_count" | "spend":
                return self._totals(c)
        raise ValueError(f"unknown field {c.field}")

    def _window(self, c: Condition) -> list[ColumnElement[bool]]:
        """Orders of the condition's window (from the start of the local day ``months`` ago)
        that are not refunded in full."""
        local = self.now.astimezone(self.zone).date() - relativedelta(months=c.months or 0)
        return [Order.paid_at >= self._start_of(local), Order.refunded_fen < Order.amount_fen]

    def _totals(self, c: Condition) -> ColumnElement[bool]:
        """Members whose order count or net spend in the window is at least / at most the
        value: one grouped pass over the window's orders, hashed once (IN, as above); "at
        most" is "not above", so members with no orders in the window count too."""
        total = (
            func.count()
            if c.field == "order_count"
            else func.sum(Order.amount_fen - Order.refunded_fen)
        )
        value = int(c.value)  # type: ignore[arg-type]
        if c.op == "gte" and value <= 0:
            return true()
        having = total >= value if c.op == "gte" else total > value
        members = select(Order.member_id).where(*self._window(c)).group_by(Order.member_id)
        chosen = Member.id.in_(members.having(having))
        return chosen if c.op == "gte" else ~chosen

    def _has_tag(self, tag: str) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return Member.tags.cast(JSONB).contains(func.jsonb_build_array(tag))
        each = func.json_each(Member.tags).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value == tag))

    def _start_of(self, day: date) -> datetime:
        return datetime.combine(day, time.min, self.zone)


def compiler_for(session: AsyncSession, zone: ZoneInfo, now: datetime | None = None) -> Compiler:
    """The compiler for the session's database (purchase windows end ``now``, by default the
    present)."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return Compiler(dialect, zone, now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Preview:
    """What a marketer sees before scheduling: how many, a sample, and how many could still
    receive a mass send this month (WeChat allows a member 4)."""

    count: int
    with_mass_allowance: int
    sample: list[dict[str, Any]]


async def preview(
    session: AsyncSession,
    audience: Audience,
    zone: ZoneInfo,
    month_start: datetime,
    mass_per_month: int,
    sample_size: int = 10,
) -> Preview:
    """Count the audience, count those with mass-send allowance left, and show a sample."""
    where = compiler_for(session, zone).where(audience)
    # Members who have had their mass sends this month: usually few, aggregated once and
    # hashed, then looked up for each member of the audience as it is counted.
    exhausted = (
        select(Delivery.member_id)
        .where(
            Delivery.channel == "mass",
            Delivery.status == "sent",
            Delivery.updated_at >= month_start,
        )
        .group_by(Delivery.member_id)
        .having(func.count() >= mass_per_month)
    )
    # One statement: the audience is evaluated once; the window aggregates count all of it
    # while only the sample's rows come back (none when the audience is empty).
    rows = (
        await session.execute(
            select(
                Member.id,
                Member.name,
                Member.tier,
                Member.segment,
                Member.points_balance,
                func.count().over(),
                func.count().filter(Member.id.in_(exhausted)).over(),
            )
            .where(where)
            .order_by(Member.id)
            .limit(sample_size)
        )
    ).all()
    count, spent = (rows[0][5], rows[0][6]) if rows else (0, 0)
    return Preview(
        count=int(count or 0),
        with_mass_allowance=int(count or 0) - int(spent or 0),
        sample=[
            {"id": i, "name": n, "tier": t, "segment": seg, "points": p}
            for i, n, t, seg, p, _, _ in rows
        ],
    )


async def member_ids(
    session: AsyncSession, audience: Audience, zone: ZoneInfo, batch: int = 5000
) -> AsyncIterator[list[int]]:
    """The audience's member ids, streamed in batches."""
    where = compiler_for(session, zone).where(audience)
    result = await session.stream(
        select(Member.id).where(where).order_by(Member.id).execution_options(yield_per=batch)
    )
    async for rows in result.partitions(batch):
        yield [member_id for (member_id,) in rows]
