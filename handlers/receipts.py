"""WeChat's report on a template message (TEMPLATESENDJOBFINISH): recorded, never answered."""

from __future__ import annotations

from handlers.inbound import Inbound
from handlers.router import Router, event

router = Router("receipts")


@router.on(event("templatesendjobfinish"))
async def template_finished(msg: Inbound) -> None:
    """Queue the outcome for the batched write; no SQL here (thousands arrive a second)."""
    if msg.msg_id:
        await msg.svc.receipts.note(msg.msg_id, msg.status)
