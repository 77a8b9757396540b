"""我的券: the member's usable coupons with their expiry dates."""

from __future__ import annotations

from datetime import timedelta

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import copy
from messages.replies import TextReply
from models.base import utcnow
from models.coupons import list_usable_coupons

router = Router("coupons")
# WeChat shows long replies cut off; the shop app has the full list.
MAX_LISTED = 10


@router.on(intent("coupons"))
async def show_coupons(msg: Inbound) -> TextReply:
    """Answer 我的券 and the coupons menu key."""
    rules = msg.svc.rules
    if msg.member_id is None:
        raise RuntimeError("coupons asked without a member")
    if msg.nothing_on_record:
        return TextReply(copy.COUPONS_NONE)
    async with msg.reading() as connection:
        coupons = await list_usable_coupons(connection, msg.member_id, utcnow())
    if not coupons:
        return TextReply(copy.COUPONS_NONE)
    lines = [copy.COUPONS_TITLE.format(count=len(coupons))]
    for coupon in coupons[:MAX_LISTED]:
        kind = rules.coupon_kind(coupon.kind)
        last_day = (coupon.valid_until.astimezone(rules.zone) - timedelta(seconds=1)).date()
        lines.append(
            copy.COUPONS_LINE.format(
                name=kind.name if kind else coupon.kind, code=coupon.code, day=last_day
            )
        )
    return TextReply("\n".join(lines))
