"""A member's personal data under China's PIPL: everything stored about them (export), and
erasure that keeps the books straight.

Export gathers every row that names the member, table by table, as JSON-ready dicts.

Erasure removes what identifies the person and what they said, and keeps what the programme's
totals need: the member row stays (orders, ledger entries and lots point to it, so every
balance still adds up and ``ledger verify`` passes) but loses openid, shop customer id, name,
phone, birthday and tags; conversation messages, rating comments and the notes staff took on
follow-up calls are blanked (open follow-ups are closed as ``erased``), and the words
kept from messages the bot did not understand are deleted; push, event and shop-event payloads
are emptied (shop events not yet sent are dropped); recaps, referral
links and open binding codes are deleted. The audit log keeps its entries (they record what
staff did, not what the member said).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.benefits.tables import BenefitGrant
from models.binding import BindingCode
from models.birthdays import BirthdayGift
from models.campaigns import CampaignMember
from models.compensations import Compensation
from models.conversations import Conversation, ConversationMessage
from models.coupons import Coupon
from models.deliveries import Delivery
from models.events import MemberEvent
from models.follow_ups import FollowUpAttempt
from models.hooks import HookDelivery
from models.ledger import LedgerEntry, PointLot
from models.members import Member
from models.misses import ChatMissText, forget_member_texts
from models.orders import Order, Refund
from models.ratings import FollowUp, Rating
from models.recap import MemberRecap
from models.referrals import Referral, ReferralLink, ReferralStar
from models.tiers import TierChange

# Tables with a member_id column, exported as they are.
_BY_MEMBER: tuple[Any, ...] = (
    Order,
    LedgerEntry,
    PointLot,
    Coupon,
    TierChange,
    MemberEvent,
    BindingCode,
    Delivery,
    Rating,
    FollowUp,
    ReferralStar,
    MemberRecap,
    Conversation,
    CampaignMember,
    ReferralLink,
    HookDelivery,
    BirthdayGift,
    ChatMissText,
    Compensation,
    BenefitGrant,
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: _plain(getattr(obj, c.key)) for c in obj.__table__.columns}


async def export_member(session: AsyncSession, member: Member) -> dict[str, Any]:
    """Everything stored about ``member``, by table."""
    data: dict[str, Any] = {"member": _row(member)}
    for model in _BY_MEMBER:
        rows = await session.scalars(select(model).where(model.member_id == member.id))
        data[model.__tablename__] = [_row(r) for r in rows]
    refunds = await session.scalars(
        select(Refund).join(Order, Order.id == Refund.order_id).where(Order.member_id == member.id)
    )
    data["refunds"] = [_row(r) for r in refunds]
    messages = await session.scalars(
        select(ConversationMessage)
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(Conversation.member_id == member.id)
        .order_by(ConversationMessage.id)
    )
    data["conversation_messages"] = [_row(m) for m in messages]
    attempts = await session.scalars(
        select(FollowUpAttempt)
        .join(FollowUp, FollowUp.id == FollowUpAttempt.follow_up_id)
        .where(FollowUp.member_id == member.id)
        .order_by(FollowUpAttempt.id)
    )
    data["follow_up_attempts"] = [_row(a) for a in attempts]
    referrals = await session.scalars(
        select(Referral).where(
            (Referral.referrer_id == member.id) | (Referral.referee_id == member.id)
        )
    )
    data["referrals"] = [_row(r) for r in referrals]
    return data


async def erase_member(session: AsyncSession, member: Member, now: datetime) -> dict[str, int]:
    """Erase the member's personal data (see the module's docstring); what was changed."""
    changed: dict[str, int] = {}
    conversations = select(Conversation.id).where(Conversation.member_id == member.id)
    result = await session.execute(
        update(ConversationMessage)
        .where(ConversationMessage.conversation_id.in_(conversations))
        .values(content="", media_id=None)
    )
    changed["conversation_messages"] = result.rowcount or 0
    await session.execute(
        update(Conversation)
        .where(Conversation.member_id == member.id, Conversation.status.in_(("queued", "assigned")))
        .values(status="returned", outcome="erased", closed_at=now)
    )
    result = await session.execute(
        update(Rating).where(Rating.member_id == member.id).values(comment=None)
    )
    changed["ratings"] = result.rowcount or 0
    # What staff wrote down from calls with the member; an open follow-up can no longer be
    # worked (the phone number goes), so it is closed.
    follow_ups = select(FollowUp.id).where(FollowUp.member_id == member.id)
    result = await session.execute(
        update(FollowUpAttempt).where(FollowUpAttempt.follow_up_id.in_(follow_ups)).values(note="")
    )
    changed["follow_up_attempts"] = result.rowcount or 0
    await session.execute(
        update(FollowUp)
        .where(FollowUp.member_id == member.id)
        .values(outcome_note=None, context_ref=None)
    )
    await session.execute(
        update(FollowUp)
        .where(FollowUp.member_id == member.id, FollowUp.status == "open")
        .values(status="closed", outcome="erased", closed_at=now)
    )
    result = await session.execute(
        update(Delivery).where(Delivery.member_id == member.id).values(payload={})
    )
    changed["deliveries"] = result.rowcount or 0
    # An event's payload may quote the member (a low rating's comment); shop events carry
    # their openid. What has not gone yet never will.
    await session.execute(
        update(MemberEvent).where(MemberEvent.member_id == member.id).values(payload={})
    )
    await session.execute(
        delete(HookDelivery).where(
            HookDelivery.member_id == member.id,
            HookDelivery.status.in_(("queued", "sending")),
        )
    )
    # Nor are events not fanned out yet (their bodies would be empty and nameless).
    await session.execute(
        update(MemberEvent)
        .where(MemberEvent.member_id == member.id, MemberEvent.hooked_at.is_(None))
        .values(hooked_at=now)
    )
    result = await session.execute(
        update(HookDelivery).where(HookDelivery.member_id == member.id).values(body="{}")
    )
    changed["hook_deliveries"] = result.rowcount or 0
    # Their words in messages the bot did not understand (the counted phrasings stay).
    changed["chat_miss_texts"] = await forget_member_texts(session, member.id)
    result = await session.execute(
        update(BirthdayGift).where(BirthdayGift.member_id == member.id).values(tracking_number=None)
    )
    changed["birthday_gifts"] = result.rowcount or 0
    for model in (MemberRecap, BindingCode, ReferralLink):
        result = await session.execute(delete(model).where(model.member_id == member.id))
        changed[model.__tablename__] = result.rowcount or 0
    member.openid = None
    member.customer_ref = None
    member.name = None
    member.phone = None
    member.birthday = None
    member.birthday_bonus_from = None
    member.tags = []
    member.subscribed = False
    member.unsubscribed_at = member.unsubscribed_at or now
    await session.flush()
    changed["member"] = 1
    return changed
