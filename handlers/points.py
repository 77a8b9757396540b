"""积分: the balance, what expires soon and when, and the last three changes."""

from __future__ import annotations

from datetime import timedelta

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import copy
from messages.replies import TextReply
from models.base import utcnow
from models.ledger import expiring_soon, ledger_page

router = Router("points")
EXPIRY_HORIZON = timedelta(days=30)


@router.on(intent("points"))
async def show_points(msg: Inbound) -> TextReply:
    """Answer 积分 and the points menu key."""
    member = await msg.load_member()
    rules = msg.svc.rules
    recent = await ledger_page(msg.db, member.id, 3)
    if member.points_balance == 0 and not recent:
        hint = "" if member.customer_ref else f"\n{copy.POINTS_HOW_TO_BIND}"
        return TextReply(copy.POINTS_NONE + hint)
    now = utcnow()
    lines = [copy.POINTS_BALANCE.format(balance=member.points_balance)]
    for expires_at, points in await expiring_soon(msg.db, member.id, now, now + EXPIRY_HORIZON):
        # A lot expires at the start of a local day: the last day to use it is the one before.
        last_day = (expires_at.astimezone(rules.zone) - timedelta(seconds=1)).date()
        lines.append(copy.POINTS_EXPIRING.format(points=points, day=last_day))
    if recent:
        lines.append(copy.POINTS_RECENT_TITLE)
        for entry in recent:
            reason = (
                entry.reason
                if entry.kind in ("earn", "adjust")
                else (copy.LEDGER_REASONS.get(entry.kind, entry.reason))
            )
            lines.append(
                copy.POINTS_RECENT_LINE.format(
                    day=entry.created_at.astimezone(rules.zone), reason=reason, points=entry.points
                )
            )
    return TextReply("\n".join(lines))
