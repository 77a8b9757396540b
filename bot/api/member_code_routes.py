"""The till's side of the member code: ``POST /member-codes/resolve`` turns a scanned code into
the member, and spends it (models/member_codes.py). An order then names the member by the
same code (``member_code`` in ``POST /orders``), within ``[member_centre] code_order_hours``."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot import wiring
from bot.api import schemas as s
from bot.api.routes import (
    MEMBER_CODE_REFUSALS,
    ApiError,
    _json,
    api,
    member_code_key,
    parse_body,
)
from models.base import utcnow
from models.coupons import list_usable_coupons
from models.member_codes import MemberCodeRefused, resolve_member_code
from models.rules import ProgrammeRules


def _rules(request: web.Request) -> ProgrammeRules:
    return request.config_dict[wiring.CONFIG].programme


@api.route(
    "POST",
    "/member-codes/resolve",
    "The member behind a scanned member code (spends the code)",
    body=s.MemberCodeIn,
    responses={200: s.MemberCodeOut, 404: s.ErrorOut, 410: s.ErrorOut},
)
async def post_resolve(request: web.Request) -> web.Response:
    data = await parse_body(request, s.MemberCodeIn)
    rules = _rules(request)
    window = request.config_dict[wiring.CONFIG].member_centre.code_window
    now = utcnow()
    try:
        async with request.config_dict[wiring.SESSIONS].begin() as session:
            member = await resolve_member_code(
                session, member_code_key(request), data.code, now, window
            )
            coupons = await list_usable_coupons(session, member.id, now)
            tier = rules.tier(member.tier)
            out = s.MemberCodeOut(
                openid=member.openid or "",
                customer_ref=member.customer_ref,
                tier=tier.code,
                tier_name=tier.name,
                discount=tier.discount,
                discount_rate=f"{tier.rate.normalize():f}",  # the rate the tier view serves
                points_multiplier=f"{tier.multiplier.normalize():f}",
                balance=member.points_balance,
                coupons=[
                    s.MemberCodeCouponOut(
                        code=c.code,
                        kind=c.kind,
                        name=kind.name if (kind := rules.coupon_kind(c.kind)) else c.kind,
                        valid_until=c.valid_until,
                    )
                    for c in coupons
                ],
                order_until=now + timedelta(hours=window.order_hours),
            )
    except MemberCodeRefused as exc:
        status, error, message = MEMBER_CODE_REFUSALS[exc.reason]
        raise ApiError(status, error, message, "code") from None
    return _json(out)
