"""The points catalogue through the JSON API: items (create, list, get, change, retire) for the
marketing team's tools, and the fulfilment records a shop system reads and closes
(``picked_up``, ``shipped`` with a tracking number, ``cancelled`` with the points returned).

Validation errors name the field (422, like every other endpoint here) and write nothing.
Closing a record the same way twice answers 200 with ``replayed`` (a shop may retry); closing
it another way is a 409."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.api import schemas as s
from bot.api.routes import (
    CALLER,
    ApiError,
    _json,
    _refuse_nul,
    api,
    id_param,
    parse_body,
    parse_query,
)
from bot.validation import first_error
from models.base import utcnow
from models.ledger import KeyConflict
from models.rewards import (
    Fulfilment,
    FulfilmentRefused,
    RewardItem,
    RewardSpec,
    add_item,
    apply_spec,
    close_fulfilment,
    fulfilments,
    redemption_counts,
    spec_of,
)
from models.rules import ProgrammeRules


class RewardOut(RewardSpec):
    """An item as stored, with its id, status and what was redeemed of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    status: Literal["active", "retired"]
    redeemed: int = Field(description="redemptions not cancelled")
    created_at: datetime
    updated_at: datetime


class RewardListOut(BaseModel):
    rewards: list[RewardOut]


class RewardPatch(BaseModel):
    """Only the fields to change; the result is checked as a whole item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str | None = None
    kind: str | None = None
    coupon_kind: str | None = None
    delivery: str | None = None
    points_price: int | None = None
    cash_fen: int | None = None
    stock: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    limit_count: int | None = None
    limit_period: str | None = None
    tiers: list[str] | None = None
    early_tiers: list[str] | None = None
    opens_at: datetime | None = None
    image_url: str | None = None


class RewardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["active", "retired", "all"] = "active"


class FulfilmentOut(BaseModel):
    id: int
    reward_id: int
    reward_name: str
    kind: str
    delivery: str | None
    member_id: int
    customer_ref: str | None
    points: int
    cash_fen: int = Field(description="to collect from the member on pickup")
    status: str
    pickup_code: str | None
    tracking_number: str | None
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    replayed: bool = False


class FulfilmentListOut(BaseModel):
    fulfilments: list[FulfilmentOut]
    next_after: int | None = Field(description="pass as after= for the next page; null: last")


class FulfilmentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["pending", "picked_up", "shipped", "cancelled", "all"] = "pending"
    pickup_code: str | None = Field(default=None, max_length=16)
    after: int = Field(default=0, ge=0, le=2**62)
    limit: int = Field(default=100, ge=1, le=500)


class FulfilmentIn(s._In):
    status: Literal["picked_up", "shipped", "cancelled"]
    tracking_number: str | None = Field(default=None, min_length=1, max_length=64)


async def _body_spec(request: web.Request) -> RewardSpec:
    """The request's item, strictly, as ``parse_body`` reads bodies, but naming the field of
    a rule across fields too (coupon_kind, delivery, …)."""
    raw = await request.read()
    return _checked(raw or b"null", request.config_dict[wiring.CONFIG].programme)


def _checked(raw: dict[str, Any] | bytes, rules: ProgrammeRules) -> RewardSpec:
    """The item checked as a whole and against the programme; 422 naming the field."""
    try:
        if isinstance(raw, bytes):
            spec = RewardSpec.model_validate_json(raw, strict=True)
            _refuse_nul(json.loads(raw))
        else:
            spec = RewardSpec.model_validate(raw)
        spec.check(rules)
    except ValidationError as exc:
        field, message = first_error(exc)
        if field is None and ": " in message:
            field, message = message.split(": ", 1)
        raise ApiError(422, "invalid", message, field) from None
    except ValueError as exc:
        field, message = str(exc).split(": ", 1)
        raise ApiError(422, "invalid", message, field) from None
    return spec


async def _out(session: AsyncSession, item: RewardItem) -> RewardOut:
    counts = (await redemption_counts(session, item.id)).get(item.id, {})
    return _row_out(item, counts)


def _row_out(item: RewardItem, counts: dict[str, int]) -> RewardOut:
    return RewardOut(
        **spec_of(item).model_dump(),
        id=item.id,
        status=item.status,  # type: ignore[arg-type]
        redeemed=sum(n for status, n in counts.items() if status != "cancelled"),
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


# A shop system's retry of a POST carries the first attempt's key (IETF's Idempotency-Key).
IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{8,100}")
_KEY_SCHEMA = {"type": "string", "minLength": 8, "maxLength": 100, "pattern": "^[!-~]+$"}


@api.route(
    "POST",
    "/rewards",
    "Add an item to the points catalogue (with an Idempotency-Key, a retry gets the same item)",
    body=RewardSpec,
    responses={201: RewardOut, 200: RewardOut, 409: s.ErrorOut},
    headers={IDEMPOTENCY_KEY: _KEY_SCHEMA},
)
async def post_reward(request: web.Request) -> web.Response:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is not None and not _KEY.fullmatch(key):
        raise ApiError(
            422, "invalid", "8 to 100 visible ASCII characters, no spaces", IDEMPOTENCY_KEY
        )
    spec = await _body_spec(request)
    try:
        async with request.config_dict[wiring.SESSIONS].begin() as session:
            added = await add_item(session, spec, utcnow(), key)
            counts = {} if added.created else await redemption_counts(session, added.item.id)
            out = _row_out(added.item, counts.get(added.item.id, {}))
    except KeyConflict as exc:
        raise ApiError(409, "key_conflict", str(exc), IDEMPOTENCY_KEY) from None
    return _json(out, 201 if added.created else 200)


@api.route(
    "GET",
    "/rewards",
    "The catalogue's items (active by default), with what was redeemed of each",
    query=RewardQuery,
    responses={200: RewardListOut},
)
async def get_rewards(request: web.Request) -> web.Response:
    query = parse_query(request, RewardQuery)
    statement = select(RewardItem).order_by(RewardItem.points_price, RewardItem.id)
    if query.status != "all":
        statement = statement.where(RewardItem.status == query.status)
    async with request.config_dict[wiring.SESSIONS]() as session:
        items = (await session.scalars(statement)).all()
        counts = await redemption_counts(session)
    return _json(RewardListOut(rewards=[_row_out(i, counts.get(i.id, {})) for i in items]))


async def _item(session: AsyncSession, request: web.Request, lock: bool = False) -> RewardItem:
    item_id = id_param(request, "reward_id", "unknown_reward", "reward")
    statement = select(RewardItem).where(RewardItem.id == item_id)
    item = await session.scalar(statement.with_for_update() if lock else statement)
    if item is None:
        raise ApiError(404, "unknown_reward", "no reward with this id", "reward_id")
    return item


@api.route(
    "GET",
    "/rewards/{reward_id}",
    "One catalogue item",
    responses={200: RewardOut, 404: s.ErrorOut},
)
async def get_reward(request: web.Request) -> web.Response:
    async with request.config_dict[wiring.SESSIONS]() as session:
        item = await _item(session, request)
        return _json(await _out(session, item))


@api.route(
    "PATCH",
    "/rewards/{reward_id}",
    "Change a catalogue item (only the fields given; stock sets what is left)",
    body=RewardPatch,
    responses={200: RewardOut, 404: s.ErrorOut},
)
async def patch_reward(request: web.Request) -> web.Response:
    patch = await parse_body(request, RewardPatch)
    rules = request.config_dict[wiring.CONFIG].programme
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        item = await _item(session, request, lock=True)
        merged = {**spec_of(item).model_dump(), **patch.model_dump(exclude_unset=True)}
        apply_spec(item, _checked(merged, rules), utcnow())
        await session.flush()
        return _json(await _out(session, item))


@api.route(
    "POST",
    "/rewards/{reward_id}/retire",
    "Retire a catalogue item: no longer listed or redeemable (records are kept)",
    responses={200: RewardOut, 404: s.ErrorOut},
)
async def retire_reward(request: web.Request) -> web.Response:
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        item = await _item(session, request, lock=True)
        if item.status != "retired":
            item.status, item.updated_at = "retired", utcnow()
        await session.flush()
        return _json(await _out(session, item))


def _fulfilment_out(found: Fulfilment) -> FulfilmentOut:
    return FulfilmentOut(
        id=found.redemption_id,
        reward_id=found.item_id,
        reward_name=found.item_name,
        kind=found.kind,
        delivery=found.delivery,
        member_id=found.member_id,
        customer_ref=found.customer_ref,
        points=found.points,
        cash_fen=found.cash_fen,
        status=found.status,
        pickup_code=found.pickup_code,
        tracking_number=found.tracking_number,
        created_at=found.created_at,
        closed_at=found.closed_at,
        closed_by=found.closed_by,
        replayed=found.replayed,
    )


@api.route(
    "GET",
    "/fulfilments",
    "Redeemed gifts, services and experiences to hand over (pending by default), oldest first",
    query=FulfilmentQuery,
    responses={200: FulfilmentListOut},
)
async def get_fulfilments(request: web.Request) -> web.Response:
    query = parse_query(request, FulfilmentQuery)
    async with request.config_dict[wiring.SESSIONS]() as session:
        found = await fulfilments(
            session,
            status=None if query.status == "all" else query.status,
            pickup_code=query.pickup_code,
            after=query.after,
            limit=query.limit,
        )
    last = found[-1].redemption_id if len(found) == query.limit else None
    return _json(
        FulfilmentListOut(fulfilments=[_fulfilment_out(f) for f in found], next_after=last)
    )


@api.route(
    "POST",
    "/fulfilments/{redemption_id}",
    "Close a fulfilment: picked_up, shipped (tracking_number) or cancelled (points returned)",
    body=FulfilmentIn,
    responses={200: FulfilmentOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_fulfilment(request: web.Request) -> web.Response:
    redemption_id = id_param(request, "redemption_id", "unknown_fulfilment", "fulfilment")
    data = await parse_body(request, FulfilmentIn)
    if data.status == "shipped" and not data.tracking_number:
        raise ApiError(422, "invalid", "a shipped gift needs one", "tracking_number")
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        try:
            closed = await close_fulfilment(
                session,
                redemption_id,
                data.status,
                by=f"api:{request[CALLER]}",
                now=utcnow(),
                tracking_number=data.tracking_number,
            )
        except FulfilmentRefused as exc:
            if exc.reason == "unknown":
                raise ApiError(
                    404, "unknown_fulfilment", "no fulfilment with this id", "redemption_id"
                ) from None
            raise ApiError(
                409, "not_pending", f"this fulfilment is already {exc.status}", "status"
            ) from None
    return _json(_fulfilment_out(closed))
