"""SQLAlchemy tables and the domain operations on them, returning facts, never sentences.
Imports nothing of ours but models."""

from models.base import Base
from models.benefits.tables import BenefitBudget, BenefitGrant, BenefitOverride
from models.binding import BindingCode
from models.birthdays import BirthdayGift
from models.campaigns import Campaign, CampaignMember, CampaignRun
from models.conversations import Conversation, ConversationMessage
from models.coupons import Coupon
from models.deliveries import Delivery, TemplateReceipt
from models.events import MemberEvent
from models.hooks import HookDelivery, HookSubscriber
from models.ledger import LedgerEntry, PointLot
from models.members import Member
from models.misses import ChatMiss, ChatMissText
from models.orders import Order, Refund
from models.ratings import FollowUp, Rating
from models.recap import MemberRecap
from models.referrals import Referral, ReferralLink, ReferralStar
from models.staff import AuditEntry, Staff
from models.state import ProgrammeState
from models.tiers import TierChange

__all__ = [
    "AuditEntry",
    "Base",
    "BenefitBudget",
    "BenefitGrant",
    "BenefitOverride",
    "BindingCode",
    "BirthdayGift",
    "Campaign",
    "CampaignMember",
    "CampaignRun",
    "ChatMiss",
    "ChatMissText",
    "Conversation",
    "ConversationMessage",
    "Coupon",
    "Delivery",
    "FollowUp",
    "HookDelivery",
    "HookSubscriber",
    "LedgerEntry",
    "Member",
    "MemberEvent",
    "MemberRecap",
    "Order",
    "PointLot",
    "ProgrammeState",
    "Rating",
    "Referral",
    "ReferralLink",
    "ReferralStar",
    "Refund",
    "Staff",
    "TemplateReceipt",
    "TierChange",
]
