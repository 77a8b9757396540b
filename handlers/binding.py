"""A follower sends the binding code from a receipt; their openid joins the shop's customer."""

from __future__ import annotations

from dataclasses import dataclass

from handlers.follow import welcome_line
from handlers.inbound import Inbound
from handlers.router import Filter, Router
from messages import copy
from messages.replies import TextReply
from models.base import utcnow
from models.benefits.upgrade import upgrade_gifts
from models.benefits.welcome import grant_welcome
from models.binding import BindingRefused, claim_binding_code, normalize_code
from models.tiers import upgrade_if_earned

router = Router("binding")
# Wrong codes per follower per hour before we stop trying (guessing a code is then hopeless).
MAX_FAILURES = 5
FAILURE_WINDOW = 3600
_REFUSALS = {
    "invalid": copy.BIND_INVALID,
    "expired": copy.BIND_EXPIRED,
    "used": copy.BIND_USED,
    "taken": copy.BIND_TAKEN,
}


@dataclass(frozen=True)
class _LooksLikeCode(Filter):
    def __call__(self, msg: Inbound) -> bool:
        return msg.kind == "text" and normalize_code(msg.text) is not None


@router.on(_LooksLikeCode())
async def bind(msg: Inbound) -> TextReply:
    """Claim the code; wrong codes are counted and throttled."""
    failures_key = f"bind:failures:{msg.openid}"
    redis = msg.svc.redis
    if int(await redis.get(failures_key) or 0) >= MAX_FAILURES:
        return TextReply(copy.BIND_THROTTLED)
    code = normalize_code(msg.text)
    assert code is not None  # guaranteed by the filter
    now = utcnow()
    try:
        customer = await claim_binding_code(msg.db, code, msg.openid, now)
    except BindingRefused as refused:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.incr(failures_key).expire(failures_key, FAILURE_WINDOW).execute()
        return TextReply(_REFUSALS[refused.reason])
    rules = msg.svc.rules
    await upgrade_if_earned(msg.db, rules, customer, now, upgrade_gifts(msg.db, rules, now))
    welcome = await grant_welcome(msg.db, rules, customer.id, now)
    await msg.db.commit()
    msg.member, msg.member_id = customer, customer.id
    await msg.svc.member_ids.remember_member(msg.openid, customer.id)
    text = copy.BIND_OK.format(balance=customer.points_balance)
    return TextReply(text + welcome_line(rules, welcome))
