"""积分: the balance, what expires soon and when, and the last three changes; when points
expire, and the latest orders' points (what points buy is handlers/rewards.py's)."""

from __future__ import annotations

from datetime import timedelta

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import chat_copy, copy
from messages.replies import TextReply
from models.base import utcnow
from models.ledger import expiring_soon
from models.orders import latest_orders

router = Router("points")
# How far ahead 积分什么时候过期 looks, and how many expiry dates it lists.
_EXPIRY_HORIZON = timedelta(days=800)
_EXPIRY_SHOWN = 3


@router.on(intent("points"))
async def show_points(msg: Inbound) -> TextReply:
    """Answer 积分 and the points menu key."""
    rules = msg.svc.rules
    now = utcnow()
    if msg.member_id is None:
        raise RuntimeError("points asked without a member")
    summary = None
    if not msg.nothing_on_record:
        summary = await msg.svc.points.summary(
            msg.member_id,
            now,
            msg.reading,
            in_transaction=msg.session is not None,
            seen=msg.points_seen,
        )
    if summary is None or (summary.balance == 0 and not summary.recent):
        bound = summary is not None and summary.bound
        return TextReply(copy.POINTS_NONE + ("" if bound else f"\n{copy.POINTS_HOW_TO_BIND}"))
    lines = [copy.POINTS_BALANCE.format(balance=summary.balance)]
    for expires_at, points in summary.expiring:
        # A lot expires at the start of a local day: the last day to use it is the one before.
        last_day = (expires_at.astimezone(rules.zone) - timedelta(seconds=1)).date()
        lines.append(copy.POINTS_EXPIRING.format(points=points, day=last_day))
    if summary.recent:
        lines.append(copy.POINTS_RECENT_TITLE)
        for created_at, kind, reason, points in summary.recent:
            shown = copy.ledger_reason(kind, reason)
            lines.append(
                copy.POINTS_RECENT_LINE.format(
                    day=created_at.astimezone(rules.zone), reason=shown, points=points
                )
            )
    return TextReply("\n".join(lines))


@router.on(intent("points_expiry"))
async def show_expiry(msg: Inbound) -> TextReply:
    """积分什么时候过期: what expires when (the next dates first), then the rule."""
    rules = msg.svc.rules
    now = utcnow()
    if msg.member_id is None:
        raise RuntimeError("points asked without a member")
    async with msg.reading() as connection:
        expiring = await expiring_soon(connection, msg.member_id, now, now + _EXPIRY_HORIZON)
    lines = [chat_copy.EXPIRY_TITLE] if expiring else [chat_copy.EXPIRY_NONE]
    for expires_at, points in expiring[:_EXPIRY_SHOWN]:
        last_day = (expires_at.astimezone(rules.zone) - timedelta(seconds=1)).date()
        lines.append(chat_copy.EXPIRY_LINE.format(points=points, day=last_day))
    if rules.points.expiry_policy == "end_of_next_year":
        lines.append(chat_copy.EXPIRY_RULE_YEAR_END)
    else:
        lines.append(chat_copy.EXPIRY_RULE_ROLLING.format(months=rules.points.expiry_months))
    return TextReply("\n".join(lines))


@router.on(intent("points_missing"))
async def show_latest_orders(msg: Inbound) -> TextReply:
    """积分怎么还没到账: the latest orders with the points each earned, and what to do when
    one is missing."""
    rules = msg.svc.rules
    if msg.member_id is None:
        raise RuntimeError("points asked without a member")
    async with msg.reading() as connection:
        orders = await latest_orders(connection, msg.member_id)
    lines = [chat_copy.ORDERS_TITLE] if orders else [chat_copy.ORDERS_NONE]
    for paid_at, order, amount_fen, points in orders:
        lines.append(
            chat_copy.ORDER_LINE.format(
                day=paid_at.astimezone(rules.zone),
                order=order,
                yuan=copy.fen_to_yuan(amount_fen),
                points=points,
            )
        )
    lines.append(chat_copy.ORDERS_NOTE)
    return TextReply("\n".join(lines))
