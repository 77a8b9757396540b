"""Campaign audiences: a tree of conditions on members, compiled to one SQL WHERE clause.

    {"all": [{"field": "tier", "op": "in", "value": ["gold", "diamond"]},
             {"any": [{"field": "points", "op": "gte", "value": 1000},
                      {"field": "last_purchase", "op": "before", "value": "2026-06-01"}]}]}

Fields: ``tier``, ``segment`` (``in``), ``tag`` (``has_any``), ``birthday_month`` (``in``,
1-12), ``points`` (``gte``/``lte``), ``last_purchase`` (``before``/``after`` a local date;
``before`` means bought, but not since), ``subscribed_since`` (``before``/``after``). Groups
nest with ``all`` (AND) and ``any`` (OR). Every audience is also limited to members who follow
the account. The compiled clause is evaluated by the database over all members at once:
counting a million takes one statement, not a loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

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


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Node):
    """One test on a member."""

    field: Literal[
        "tier", "segment", "tag", "birthday_month", "points", "last_purchase", "subscribed_since"
    ]
    op: Literal["in", "has_any", "gte", "lte", "before", "after"]
    value: list[str] | list[int] | int | date

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
    """Turns an audience into a WHERE clause on ``members`` (``dialect`` for JSON tags)."""

    dialect: str
    zone: ZoneInfo

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
        raise ValueError(f"unknown field {c.field}")

    def _has_tag(self, tag: str) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return Member.tags.cast(JSONB).contains(func.jsonb_build_array(tag))
        each = func.json_each(Member.tags).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value == tag))

    def _start_of(self, day: date) -> datetime:
        return datetime.combine(day, time.min, self.zone)


def compiler_for(session: AsyncSession, zone: ZoneInfo) -> Compiler:
    """The compiler for the session's database."""
    return Compiler(session.bind.dialect.name if session.bind else "sqlite", zone)


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
