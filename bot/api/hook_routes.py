"""Events for shop systems through the JSON API: subscribe a URL to event types (the secret
is shown once, at creation), list and deactivate subscribers, read a subscriber's delivery
log, and replay a delivery (bot/push/shop_hooks.py sends them)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from bot import wiring
from bot.api import schemas as s
from bot.api.routes import ApiError, _json, api, id_param, parse_body, parse_query
from bot.push.shop_hooks import hooks_outbox, target_problem
from models.base import utcnow
from models.hooks import (
    TYPES,
    EventType,
    HookDelivery,
    HookSubscriber,
    add_subscriber,
    delivery_log,
    replay,
)


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(
        min_length=1,
        max_length=500,
        description="http(s) URL events are POSTed to; its host must resolve to public "
        "addresses only, unless [hooks] allow_private_targets",
    )
    types: list[EventType] = Field(min_length=1, max_length=len(TYPES))

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class SubscriberOut(BaseModel):
    id: int
    name: str
    url: str
    types: list[str]
    active: bool
    created_at: datetime


class NewSubscriberOut(SubscriberOut):
    secret: str = Field(description="the HMAC-SHA256 key; shown only now")


class SubscribersOut(BaseModel):
    subscribers: list[SubscriberOut]


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["queued", "sending", "delivered", "failed"] | None = None
    before: int | None = Field(default=None, ge=1, le=2**62, description="a delivery id")
    limit: int = Field(default=50, ge=1, le=200)


class HookDeliveryOut(BaseModel):
    id: int
    type: str
    idempotency_key: str
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None = Field(description="while queued")


class HookLogOut(BaseModel):
    deliveries: list[HookDeliveryOut]
    next_before: int | None = Field(description="pass as ?before= for the next page")


def _out(subscriber: HookSubscriber) -> dict[str, object]:
    return {
        "id": subscriber.id,
        "name": subscriber.name,
        "url": subscriber.url,
        "types": subscriber.types,
        "active": subscriber.active,
        "created_at": subscriber.created_at,
    }


@api.route(
    "POST",
    "/hooks",
    "Subscribe a URL to event types; the answer carries the signing secret, once",
    body=SubscriberIn,
    responses={201: NewSubscriberOut, 409: s.ErrorOut},
)
async def post_hook(request: web.Request) -> web.Response:
    data = await parse_body(request, SubscriberIn)
    allow_private = request.config_dict[wiring.CONFIG].hooks.allow_private_targets
    problem = await target_problem(data.url, allow_private)
    if problem is not None:
        raise ApiError(422, "invalid", problem, "url")
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        taken = await session.scalar(
            select(HookSubscriber.id).where(HookSubscriber.name == data.name)
        )
        if taken is not None:
            raise ApiError(409, "name_taken", "a subscriber has this name", "name")
        secret = secrets.token_hex(32)
        subscriber = await add_subscriber(
            session, data.name, data.url, data.types, secret, utcnow()
        )
        return _json(NewSubscriberOut(**_out(subscriber), secret=secret), 201)


@api.route("GET", "/hooks", "The subscribers", responses={200: SubscribersOut})
async def get_hooks(request: web.Request) -> web.Response:
    async with request.config_dict[wiring.SESSIONS]() as session:
        rows = (await session.scalars(select(HookSubscriber).order_by(HookSubscriber.id))).all()
    return _json(SubscribersOut(subscribers=[SubscriberOut(**_out(r)) for r in rows]))


@api.route(
    "DELETE",
    "/hooks/{subscriber_id}",
    "Stop sending to a subscriber (its log is kept)",
    responses={200: SubscriberOut, 404: s.ErrorOut},
)
async def delete_hook(request: web.Request) -> web.Response:
    subscriber_id = id_param(request, "subscriber_id", "unknown_subscriber", "subscriber")
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        subscriber = await session.get(HookSubscriber, subscriber_id)
        if subscriber is None:
            raise ApiError(404, "unknown_subscriber", "no subscriber with this id", "subscriber_id")
        subscriber.active = False
        return _json(SubscriberOut(**_out(subscriber)))


@api.route(
    "GET",
    "/hooks/{subscriber_id}/deliveries",
    "A subscriber's deliveries, newest first",
    query=LogQuery,
    responses={200: HookLogOut, 404: s.ErrorOut},
)
async def get_hook_log(request: web.Request) -> web.Response:
    subscriber_id = id_param(request, "subscriber_id", "unknown_subscriber", "subscriber")
    query = parse_query(request, LogQuery)
    async with request.config_dict[wiring.SESSIONS]() as session:
        if await session.get(HookSubscriber, subscriber_id) is None:
            raise ApiError(404, "unknown_subscriber", "no subscriber with this id", "subscriber_id")
        rows = await delivery_log(
            session, subscriber_id, status=query.status, before=query.before, limit=query.limit
        )
    return _json(
        HookLogOut(
            deliveries=[_delivery(row) for row in rows],
            next_before=rows[-1].id if len(rows) == query.limit else None,
        )
    )


def _delivery(row: HookDelivery) -> HookDeliveryOut:
    return HookDeliveryOut(
        id=row.id,
        type=row.type,
        idempotency_key=row.idempotency_key,
        status=row.status,
        attempts=row.attempts,
        response_status=row.response_status,
        error=row.error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        next_attempt_at=row.not_before if row.status == "queued" else None,
    )


@api.route(
    "POST",
    "/hooks/deliveries/{delivery_id}/replay",
    "Send a delivered or failed delivery again (same body and idempotency key)",
    responses={202: HookDeliveryOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_hook_replay(request: web.Request) -> web.Response:
    delivery_id = id_param(request, "delivery_id", "unknown_delivery", "delivery")
    hours = request.config_dict[wiring.CONFIG].hooks.retry_hours
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        if not await replay(session, delivery_id, utcnow(), timedelta(hours=hours)):
            if await session.get(HookDelivery, delivery_id) is None:
                raise ApiError(404, "unknown_delivery", "no delivery with this id", "delivery_id")
            raise ApiError(409, "in_flight", "this delivery is still being sent", "delivery_id")
        row = await session.get_one(HookDelivery, delivery_id, populate_existing=True)
        out = _delivery(row)
    await hooks_outbox(request.config_dict[wiring.REDIS]).enqueue([delivery_id])
    return _json(out, 202)
