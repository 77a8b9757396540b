"""SQLAlchemy tables and the domain operations on them, returning facts, never sentences.
Imports nothing of ours but models."""

from models.base import Base
from models.benefits.tables import BenefitBudget, BenefitGrant, BenefitOverride
from models.binding import BindingCode
from models.birthdays import BirthdayGift
from models.campaign_rewards import CampaignReward
from models.campaigns import Campaign, CampaignMember, CampaignRun
from models.canned import CannedReply
from models.cases import CaseEntry, ServiceCase
from models.compensations import Compensation
from models.conversations import Conversation, ConversationMessage
from models.coupon_reminders import CouponReminder
from models.coupons import Coupon
from models.deliveries import Delivery, TemplateReceipt
from models.events import MemberEvent
from models.follow_ups import FollowUpAttempt
from models.hooks import HookDelivery, HookSubscriber
from models.ledger import LedgerEntry, PointLot
from models.member_codes import MemberCodeUse
from models.members import Member
from models.misses import ChatMiss, ChatMissText
from models.orders import Order, Refund
from models.ratings import FollowUp, Rating
from models.recap import MemberRecap
from models.referrals import Referral, ReferralLink, ReferralStar
from models.rewards import Redemption, RewardItem
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
    "CampaignReward",
    "CampaignRun",
    "CannedReply",
    "CaseEntry",
    "ChatMiss",
    "ChatMissText",
    "Compensation",
    "Conversation",
    "ConversationMessage",
    "Coupon",
    "CouponReminder",
    "Delivery",
    "FollowUp",
    "FollowUpAttempt",
    "HookDelivery",
    "HookSubscriber",
    "LedgerEntry",
    "Member",
    "MemberCodeUse",
    "MemberEvent",
    "MemberRecap",
    "Order",
    "PointLot",
    "ProgrammeState",
    "Rating",
    "Redemption",
    "Referral",
    "ReferralLink",
    "ReferralStar",
    "Refund",
    "RewardItem",
    "ServiceCase",
    "Staff",
    "TemplateReceipt",
    "TierChange",
]
