"""The API's endpoints. Each runs in one transaction: it all happens or nothing does."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.api import schemas as s
from bot.api.spec import ApiSpec
from bot.order_intake import TakenOrder, take_order
from bot.validation import first_error
from models.base import utcnow
from models.binding import create_binding_code
from models.coupons import (
    Coupon,
    CouponConflict,
    CouponRefused,
    OrderAmountRequired,
    UnknownCouponKind,
    issue_coupon,
    redeem_coupon,
)
from models.ledger import (
    EXPIRING_HORIZON,
    InsufficientPoints,
    KeyConflict,
    credit,
    debit,
    expiring_soon,
)
from models.ledger import ledger_page as read_ledger
from models.member_codes import MemberCodeRefused, claim_member_code
from models.members import Member
from models.order_posting import lock_order, refund_order
from models.orders import (
    FullyRefunded,
    OrderConflict,
    RefundTooLarge,
    lot_expiry,
    order_problem,
)
from models.ratings import satisfaction_report
from models.referrals import note_refund
from models.rules import ProgrammeRules
from models.tiers import member_stats, progress

api = ApiSpec("Loyalty programme API", "1")
Model = TypeVar("Model", bound=BaseModel)
# The name of the caller whose token the request carried ([api] token and tokens).
CALLER = web.RequestKey("api_caller", str)


class ApiError(web.HTTPException):
    """An error answered as ``{"error": {"code", "message", "field"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        body: BaseModel | None = None,
    ) -> None:
        self.status_code = status
        if body is None:
            body = s.ErrorOut(error=s.ErrorDetail(code=code, message=message, field=field))
        super().__init__(text=body.model_dump_json(), content_type="application/json")


async def parse_body(request: web.Request, model: type[Model]) -> Model:
    """The request body as ``model``, strictly (no number for a date, no string for a number,
    whatever the model's own config); 422 naming the first bad field."""
    raw = await request.read()
    try:
        data = model.model_validate_json(raw or b"null", strict=True)
    except ValidationError as exc:
        raise validation_error(exc) from None
    _refuse_nul(json.loads(raw))
    return data


def parse_query(request: web.Request, model: type[Model]) -> Model:
    query = dict(request.query)
    try:
        data = model.model_validate(query)
    except ValidationError as exc:
        raise validation_error(exc) from None
    _refuse_nul(query)
    return data


def path_param(request: web.Request, name: str) -> str:
    """A parameter of the path, as the OpenAPI document describes them (bot/api/spec.py): 1 to
    64 characters; 422 otherwise."""
    value = request.match_info[name]
    if len(value) > 64:
        raise ApiError(422, "invalid", "must be at most 64 characters", name)
    _refuse_nul({name: value})
    return value


def id_param(request: web.Request, name: str, code: str, what: str) -> int:
    """A numeric id in the path; 404 ``code`` ("no ``what`` with this id") if it is not one."""
    raw = path_param(request, name)
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(404, code, f"no {what} with this id", name)
    return int(raw)


def _refuse_nul(value: object, field: str | None = None) -> None:
    """422 for a NUL character in any string of ``value``: PostgreSQL's text cannot hold one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(422, "invalid", "must not contain NUL characters", field)
    elif isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _refuse_nul(item, f"{field}.{key}" if field else str(key))


def validation_error(exc: ValidationError) -> ApiError:
    field, message = first_error(exc)
    return ApiError(422, "invalid", message, field)


def _rules(request: web.Request) -> ProgrammeRules:
    return request.config_dict[wiring.CONFIG].programme


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(by_alias=True), status=status, content_type="application/json"
    )


async def _member(session: AsyncSession, openid: str, *, lock: bool = False) -> Member:
    query = select(Member).where(Member.openid == openid)
    member = await session.scalar(query.with_for_update() if lock else query)
    if member is None:
        raise ApiError(404, "unknown_member", "no member with this openid", "openid")
    return member


async def member_view(session: AsyncSession, rules: ProgrammeRules, member: Member) -> s.MemberOut:
    """Balance, what expires within 30 days, tier with progress, segment."""
    now = utcnow()
    stats = await member_stats(session, rules, member.id, now)
    step = progress(rules, member.tier, stats)
    soon = await expiring_soon(session, member.id, now, now + EXPIRING_HORIZON)
    return s.MemberOut(
        openid=member.openid,
        customer_ref=member.customer_ref,
        name=member.name,
        phone=member.phone,
        birthday=member.birthday,
        tags=list(member.tags or []),
        subscribed=member.subscribed,
        balance=member.points_balance,
        expiring_30_days=[s.ExpiringOut(points=p, expires_at=at) for at, p in soon],
        tier=s.TierOut(
            code=step.current.code,
            name=step.current.name,
            discount_rate=float(step.current.rate),
            discount_label=step.current.discount,
            points_multiplier=float(step.current.multiplier),
            since=member.tier_since,
            next_tier=step.next_tier.code if step.next_tier else None,
            orders_needed=step.orders_needed,
            spend_needed_fen=step.spend_needed_fen,
        ),
        segment=member.segment,
    )


@api.route(
    "PUT",
    "/members/{openid}",
    "Create or update a member's profile",
    body=s.MemberIn,
    responses={200: s.MemberOut, 201: s.MemberOut},
)
async def put_member(request: web.Request) -> web.Response:
    data = await parse_body(request, s.MemberIn)
    openid = path_param(request, "openid")
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        member = await session.scalar(select(Member).where(Member.openid == openid))
        created = member is None
        if member is None:
            member = Member(openid=openid, subscribed=False, created_at=utcnow(), tags=[])
            session.add(member)
        for name in data.model_fields_set:
            value = getattr(data, name)
            setattr(member, name, [] if name == "tags" and value is None else value)
        await session.flush()
        view = await member_view(session, _rules(request), member)
    return _json(view, 201 if created else 200)


@api.route(
    "GET",
    "/members/{openid}",
    "A member's balance, expiring points, tier, segment",
    responses={200: s.MemberOut, 404: s.ErrorOut},
)
async def get_member(request: web.Request) -> web.Response:
    async with request.config_dict[wiring.SESSIONS]() as session:
        member = await _member(session, path_param(request, "openid"))
        return _json(await member_view(session, _rules(request), member))


@api.route(
    "GET",
    "/members/{openid}/ledger",
    "The member's ledger, newest first",
    query=s.LedgerQuery,
    responses={200: s.LedgerPageOut, 404: s.ErrorOut},
)
async def get_ledger(request: web.Request) -> web.Response:
    query = parse_query(request, s.LedgerQuery)
    openid = path_param(request, "openid")
    async with request.config_dict[wiring.SESSIONS]() as session:
        member = await _member(session, openid)
        before = int(query.cursor) if query.cursor else None
        entries = await read_ledger(session, member.id, query.limit + 1, before)
    more = len(entries) > query.limit
    entries = entries[: query.limit]
    return _json(
        s.LedgerPageOut(
            entries=[
                s.LedgerEntryOut(
                    id=e.id,
                    kind=e.kind,
                    points=e.points,
                    balance_after=e.balance_after,
                    reason=e.reason,
                    created_at=e.created_at,
                )
                for e in entries
            ],
            next_cursor=str(entries[-1].id) if more else None,
        )
    )


@api.route(
    "POST",
    "/orders",
    "Report a paid order (idempotent on order_id)",
    body=s.OrderIn,
    responses={
        200: s.OrderOut,
        201: s.OrderOut,
        404: s.ErrorOut,
        409: s.ErrorOut,
        410: s.ErrorOut,
    },
)
async def post_order(request: web.Request) -> web.Response:
    data = await parse_body(request, s.OrderIn)
    rules = _rules(request)
    now = utcnow()
    if problem := order_problem(rules, data.amount_fen, data.paid_at, now):
        field, message = problem
        raise ApiError(422, "invalid", message, field)
    try:
        try:
            taken = await _take_order(request, data, now)
        except IntegrityError:
            # A concurrent duplicate lost the unique-key race: now it replays or conflicts.
            taken = await _take_order(request, data, now)
    except OrderConflict as exc:
        raise ApiError(409, "order_conflict", str(exc), "order_id") from None
    await request.config_dict[wiring.OUTBOX].enqueue(taken.questions, at=taken.questions_due)
    outcome = taken.outcome
    upgrade = outcome.upgrade
    body = s.OrderOut(
        order_id=data.order_id,
        points_earned=outcome.points,
        balance=outcome.balance,
        tier=outcome.tier,
        upgrade=s.UpgradeOut(from_tier=upgrade.from_tier, to_tier=upgrade.to_tier)
        if upgrade
        else None,
    )
    return _json(body, 200 if outcome.replayed else 201)


async def _take_order(request: web.Request, data: s.OrderIn, now: datetime) -> TakenOrder:
    """Lock the order's member and take the order (bot/order_intake.py) in one transaction."""
    rules = _rules(request)
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        if data.member_code is not None:
            member = await _member_by_code(request, session, data.member_code, data.order_id, now)
        elif data.openid is not None:
            member = await _member(session, data.openid, lock=True)
        else:
            member = await session.scalar(
                select(Member).where(Member.customer_ref == data.customer_ref).with_for_update()
            )
            if member is None:
                raise ApiError(
                    404, "unknown_member", "no member with this customer_ref", "customer_ref"
                )
        return await take_order(session, rules, member, data.for_member(member.id), now)


async def _member_by_code(
    request: web.Request, session: AsyncSession, code: str, order_id: str, now: datetime
) -> Member:
    """The member whose member code the order carries, locked, the code claimed by the order
    (models/member_codes.py); 404 for a code nobody has, 410 for one expired or used."""
    config = request.config_dict[wiring.CONFIG]
    try:
        member_id = await claim_member_code(
            session, member_code_key(request), code, order_id, now, config.member_centre.code_window
        )
    except MemberCodeRefused as exc:
        status, error, message = MEMBER_CODE_REFUSALS[exc.reason]
        raise ApiError(status, error, message, "member_code") from None
    return await session.get_one(Member, member_id, with_for_update=True)


def member_code_key(request: web.Request) -> bytes:
    """The key member codes are made and read with (the member centre's: bot/pages/settings.py)."""
    config = request.config_dict[wiring.CONFIG]
    return config.member_centre.key("member-code", config.wechat.secret)


# A refused member code: 404 for one nobody has, 410 for one that was good once.
MEMBER_CODE_REFUSALS = {
    "unknown": (404, "unknown_member_code", "no member has this code"),
    "expired": (410, "member_code_expired", "the code has expired; ask for the current one"),
    "used": (410, "member_code_used", "the code was used already; ask for the current one"),
}


@api.route(
    "POST",
    "/orders/{order_id}/refund",
    "Refund all or part of an order",
    body=s.RefundIn,
    responses={200: s.RefundOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_refund(request: web.Request) -> web.Response:
    data = await parse_body(request, s.RefundIn)
    order_id = path_param(request, "order_id")
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        order = await lock_order(session, order_id)
        if order is None:
            raise ApiError(404, "unknown_order", "no order with this id", "order_id")
        now = utcnow()
        try:
            outcome = await refund_order(session, order, data.amount_fen, data.refund_id, now)
        except FullyRefunded:
            raise ApiError(
                409, "fully_refunded", "the order is already fully refunded", "amount_fen"
            ) from None
        except RefundTooLarge as exc:
            raise ApiError(409, "refund_too_large", str(exc), "amount_fen") from None
        except OrderConflict as exc:
            raise ApiError(409, "refund_conflict", str(exc), "refund_id") from None
        if not outcome.replayed:
            await note_refund(session, _rules(request), order, now)
        balance = (
            await session.execute(select(Member.points_balance).where(Member.id == order.member_id))
        ).scalar_one()
        return _json(
            s.RefundOut(
                refund_id=data.refund_id,
                order_id=order.shop_order_id,
                amount_fen=outcome.refund.amount_fen,
                points_reversed=outcome.refund.points_reversed,
                points_unrecovered=outcome.refund.points_unrecovered,
                points_expired=outcome.refund.points_expired,
                balance=balance,
            )
        )


@api.route(
    "POST",
    "/members/{openid}/points",
    "Redeem points, or adjust them by hand",
    body=s.PointsIn,
    responses={200: s.PointsOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_points(request: web.Request) -> web.Response:
    data = await parse_body(request, s.PointsIn)
    openid = path_param(request, "openid")
    rules = _rules(request)
    if abs(data.points) > rules.points.max_adjustment:
        raise ApiError(422, "invalid", f"exceeds {rules.points.max_adjustment}", "points")
    now = utcnow()
    key = f"api:{data.idempotency_key}"
    try:
        async with request.config_dict[wiring.SESSIONS].begin() as session:
            member = await _member(session, openid)
            if data.points < 0:
                change = await debit(
                    session,
                    member.id,
                    -data.points,
                    kind=data.kind,
                    reason=data.reason,
                    key=key,
                    at=now,
                )
            else:
                change = await credit(
                    session,
                    member.id,
                    data.points,
                    kind="adjust",
                    reason=data.reason,
                    key=key,
                    at=now,
                    expires_at=lot_expiry(rules, now),
                )
    except InsufficientPoints as exc:
        raise ApiError(
            409, "insufficient_points", f"balance {exc.balance} is less than {exc.wanted}", "points"
        ) from None
    except KeyConflict as exc:
        raise ApiError(409, "key_conflict", str(exc), "idempotency_key") from None
    return _json(
        s.PointsOut(entry_id=change.entry_id, points=change.points, balance=change.balance_after)
    )


@api.route(
    "POST",
    "/members/binding-codes",
    "A one-time code that binds a follower to a customer",
    body=s.BindingCodeIn,
    responses={201: s.BindingCodeOut},
)
async def post_binding_code(request: web.Request) -> web.Response:
    data = await parse_body(request, s.BindingCodeIn)
    rules = _rules(request)
    async with request.config_dict[wiring.SESSIONS].begin() as session:
        binding = await create_binding_code(
            session,
            data.customer_ref,
            utcnow(),
            rules.binding_code_hours,
            name=data.name,
            phone=data.phone,
        )
        out = s.BindingCodeOut(
            code=binding.code, customer_ref=data.customer_ref, expires_at=binding.expires_at
        )
    return _json(out, 201)


def _coupon_out(coupon: Coupon) -> s.CouponOut:
    return s.CouponOut(
        code=coupon.code,
        kind=coupon.kind,
        status=coupon.status,
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
        redeemed_at=coupon.redeemed_at,
        order_id=coupon.shop_order_id,
    )


@api.route(
    "POST",
    "/coupons",
    "Issue a coupon of a configured kind to a member",
    body=s.CouponIssueIn,
    responses={200: s.CouponOut, 201: s.CouponOut, 404: s.ErrorOut, 409: s.ErrorOut},
)
async def post_coupon(request: web.Request) -> web.Response:
    data = await parse_body(request, s.CouponIssueIn)
    try:
        async with request.config_dict[wiring.SESSIONS].begin() as session:
            member = await _member(session, data.openid)
            issued = await issue_coupon(
                session,
                _rules(request),
                member.id,
                data.kind,
                reason=data.reason,
                key=f"api:{data.idempotency_key}",
                now=utcnow(),
                valid_days=data.valid_days,
            )
            out = _coupon_out(issued.coupon)
    except UnknownCouponKind as exc:
        raise ApiError(422, "invalid", str(exc), "kind") from None
    except CouponConflict as exc:
        raise ApiError(409, "key_conflict", str(exc), "idempotency_key") from None
    return _json(out, 200 if issued.replayed else 201)


@api.route(
    "POST",
    "/coupons/{code}/redeem",
    "Redeem a coupon against an order (idempotent), checking its conditions: the order amount "
    "reaches a threshold coupon's threshold, a first-order coupon is used on the member's first "
    "paid order, a tier coupon's member is in one of its tiers; 409 says which failed",
    body=s.CouponRedeemIn,
    responses={200: s.CouponOut, 404: s.ErrorOut, 409: s.CouponRefusalOut, 422: s.ErrorOut},
)
async def post_coupon_redeem(request: web.Request) -> web.Response:
    data = await parse_body(request, s.CouponRedeemIn)
    code = path_param(request, "code")
    try:
        async with request.config_dict[wiring.SESSIONS].begin() as session:
            member_id = None
            if data.openid is not None:
                member_id = (await _member(session, data.openid)).id
            redeemed = await redeem_coupon(
                session,
                _rules(request),
                code,
                member_id=member_id,
                shop_order_id=data.order_id,
                now=utcnow(),
                order_amount_fen=data.order_amount_fen,
            )
            out = _coupon_out(redeemed.coupon)
    except OrderAmountRequired as exc:
        raise ApiError(422, "invalid", str(exc), "order_amount_fen") from None
    except CouponRefused as exc:
        if exc.reason == "unknown":
            raise ApiError(404, "unknown_coupon", "no coupon with this code", "code") from None
        text = _REFUSAL_TEXT[exc.reason].format(threshold=exc.threshold_fen)
        field = "order_amount_fen" if exc.reason == "below_threshold" else "code"
        detail = s.CouponRefusalDetail(
            code=f"coupon_{exc.reason}", message=text, field=field, threshold_fen=exc.threshold_fen
        )
        body = s.CouponRefusalOut(error=detail)
        raise ApiError(409, detail.code, text, field, body=body) from None
    return _json(out)


_REFUSAL_TEXT = {
    "expired": "the coupon has expired",
    "used": "the coupon was already used",
    "not_yours": "the coupon belongs to another member",
    "not_yet_valid": "the coupon is not valid yet",
    "revoked": "the coupon was withdrawn (the order that earned it was refunded)",
    "below_threshold": "the order must come to at least {threshold} fen for this coupon",
    "not_first_order": "the coupon is for the member's first paid order only",
    "tier_not_eligible": "the coupon is for members of other tiers",
}


@api.route(
    "GET",
    "/reports/satisfaction",
    "CSAT and NPS of the ratings given between two local days, overall or by tier, segment "
    "or month",
    query=s.SatisfactionQuery,
    responses={200: s.SatisfactionOut},
)
async def get_satisfaction(request: web.Request) -> web.Response:
    query = parse_query(request, s.SatisfactionQuery)
    zone = _rules(request).zone
    start = datetime.combine(query.from_, time.min, zone)
    end = datetime.combine(query.to + timedelta(days=1), time.min, zone)
    async with request.config_dict[wiring.SESSIONS]() as session:
        rows = await satisfaction_report(session, start, end, query.group_by)
    return _json(
        s.SatisfactionOut(
            from_=query.from_,
            to=query.to,
            group_by=query.group_by,
            groups=[s.SatisfactionGroupOut.model_validate(row.as_dict()) for row in rows],
        )
    )
