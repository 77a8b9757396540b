"""积分: the balance, what expires soon and when, and the last three changes."""

from __future__ import annotations

from datetime import timedelta

from handlers.inbound import Inbound
from handlers.router import Router, intent
from messages import copy
from messages.replies import TextReply
from models.base import utcnow

router = Router("points")


@router.on(intent("points"))
async def show_points(msg: Inbound) -> TextReply:
    """Answer 积分 and the points menu key."""
    rules = msg.svc.rules
    now = utcnow()
    if msg.member_id is None:
        raise RuntimeError("points asked without a member")
    summary = await msg.svc.points.summary(
        msg.member_id, now, msg.reading, in_transaction=msg.session is not None
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
