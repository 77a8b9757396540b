"""积分兑换 in chat: 「积分兑换」「积分能换什么」 (or the menu key) lists what the member can
redeem now, numbered; 「兑换 2」 asks for confirmation with the price and what they receive;
「确认」 redeems, 「取消」 drops it.

The list's numbering and the pending confirmation live in the member's chat state
(handlers/clarify.py: one Redis key with an expiry). The pending confirmation carries a random
token that is the redemption's idempotency key, so a 「确认」 sent twice, at once or later,
redeems once: the second is answered with the first redemption.
"""

from __future__ import annotations

import secrets

from handlers import clarify
from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import rewards_copy
from messages.replies import TextReply
from models.base import utcnow
from models.rewards import Offer, Refusal, catalogue, why_not

router = Router("rewards")
# WeChat shows long replies cut off: the first items only.
MAX_LISTED = 10


async def _offers(msg: Inbound) -> tuple[int, list[Offer]]:
    if msg.member_id is None:
        raise RuntimeError("rewards asked without a member")
    shown = await catalogue(msg.db, msg.svc.rules, msg.member_id, utcnow())
    return shown.balance, list(shown.offers)


@router.on(intent("redeem"))
async def show_catalogue(msg: Inbound) -> TextReply:
    """积分兑换 / 积分能换什么 / the menu key: the numbered list, and remember its order."""
    balance, offers = await _offers(msg)
    if offers:
        await clarify.ask(msg, clarify.REWARDS, items=[o.reward.id for o in offers[:MAX_LISTED]])
    return TextReply(rewards_copy.listing(balance, offers, MAX_LISTED))


@router.on(intent("reward_pick"))
async def pick_reward(msg: Inbound) -> TextReply:
    """兑换 N: the item numbered N in the list last shown (or the list as it is now); a
    refusal at once if the member cannot have it, else the confirmation question."""
    rules = msg.svc.rules
    number = int(msg.slot("number") or 0)
    if number < 1:
        return TextReply(rewards_copy.PICK_WHICH)
    _, offers = await _offers(msg)
    asked = await clarify.asked(msg)
    listed = asked["items"] if asked and asked.get("kind") == clarify.REWARDS else None
    ids = listed if listed is not None else [o.reward.id for o in offers[:MAX_LISTED]]
    if number > len(ids):
        return TextReply(rewards_copy.PICK_UNKNOWN.format(number=number))
    offer = next((o for o in offers if o.reward.id == ids[number - 1]), None)
    if offer is None or offer.shortfall:
        # Short of points, or listed a moment ago and closed to this member now.
        refused = await why_not(msg.db, rules, msg.member_id or 0, ids[number - 1], utcnow())
        return TextReply(rewards_copy.refusal(refused or Refusal("unknown"), rules.zone))
    await clarify.ask(
        msg,
        clarify.REWARD_CONFIRM,
        item=offer.reward.id,
        points=offer.reward.points_price,
        token=secrets.token_hex(12),
    )
    return TextReply(rewards_copy.confirm(offer.reward))


@router.on(intent("reward_confirm"))
async def confirm_reward(msg: Inbound) -> TextReply:
    """「确认」 redeems the pending choice (once per pending choice); 「取消」 drops it. The
    redemption commits on its own, not in the message's unit of work, with other members'
    confirmations of the item on PostgreSQL (models/redemption_groups.py: a popular item's
    stock row is then taken once per group, not once per member)."""
    if msg.slot("answer") != "yes":
        await clarify.forget(msg)
        return TextReply(rewards_copy.CANCELLED)
    if msg.member_id is None:
        raise RuntimeError("reward confirmed without a member")
    outcome = await msg.svc.redemptions.redeem(
        msg.svc.rules,
        msg.member_id,
        int(msg.slot("item") or 0),
        key=f"chat:{msg.member_id}:{msg.slot('token')}",
        now=utcnow(),
        expected_points=int(msg.slot("points") or 0),
    )
    zone = msg.svc.rules.zone
    if isinstance(outcome, Refusal):
        await clarify.forget(msg)
        return TextReply(rewards_copy.refusal(outcome, zone))
    # The pending choice stays until it expires: a 「确认」 again is answered by a replay.
    return TextReply(rewards_copy.redeemed(outcome, zone))
