"""What members read about benefits (礼遇): each gift's push, a tier's perks, the holiday
greetings' offers. Every sentence that promises a coupon, gift, multiplier or benefit names
the rule or setting that gives it in ``PROMISES`` (tests/messages/test_honest_copy.py walks
every string in messages/ and fails on a promise nothing issues), and is only sent when that
rule is active and issued something."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.benefit_settings import BenefitsConfig
from models.benefits.perks import Perk

# A gift in words: a coupon, points, or both.
GIFT_COUPON = "一张【{coupon}】"
GIFT_POINTS = "{points:,} 积分"
GIFT_AND = "和"
UNTIL = "（{day:%m月%d日}前有效）"

WELCOME_GIFT = "送您{gift}新人礼{until}，首单即可使用，回复“我的券”查看。"
REPEAT_ORDER = "🎁 感谢您再次选购！复购赠礼已送达：{gift}。回复“我的券”或“积分”查看。"
MONTHLY_TIER = "🎁 {tier}本月礼遇已到账：{gift}{until}。回复“我的券”查看。"
BIRTHDAY_GIFT = (
    "🎂 生日快乐！送您{gift}{until}，回复“我的券”查看券码。"
    "本月消费还可享{multiplier}倍积分，祝您生日愉快！"
)
BIRTHDAY_GREETING = "🎂 生日快乐！本月消费可享{multiplier}倍积分，祝您生日愉快！"
BIRTHDAY_TITLE = "生日快乐"
BIRTHDAY_NOTE = "回复“我的券”查看您的优惠券。"
WINBACK_AT_RISK = "好久不见，甚是想念！送您{gift}回归专属礼{until}，回复“我的券”查看。"
WINBACK_DORMANT = "好久不见！送您{gift}{until}，回来逛逛吧，回复“我的券”查看。"
ANNIVERSARY = "🎉 会员纪念日快乐！感谢您一路相伴，送您{gift}{until}。"
PROFILE_DONE = "感谢您完善会员资料，{gift}已到账。"
SURVEY_DONE = "感谢您参与调研，{gift}已到账。"
GIFT_TITLE = "会员礼遇到账"
GIFT_NOTE = "回复“我的券”或“积分”查看详情。"

# The service notice after a paid order.
ORDER_CREDITED = "订单 {order} 已获得 {points:,} 积分{boost}，当前积分 {balance:,} 分。"
ORDER_BOOST = "（含{name} {points:,} 分）"
ORDER_CREDITED_TITLE = "积分到账通知"
ORDER_CREDITED_NOTE = "回复“积分”查看积分明细。"

# The upgrade push: the tier's perks, then what the upgrade gave.
TIER_UPGRADED = "🎉 恭喜您升级为【{name}】！即日起尊享：{perks}。{gifts}回复“权益”查看详情。"
UPGRADE_GIFT = "升级礼已送达：{gift}。"
GROWTH_GIFT = "连升多级，另赠年度成长奖励：{gift}。"

# A tier's perks (models/benefits/perks.py), by kind.
PERKS = {
    "discount": "全场{value}",
    "multiplier": "{value}倍积分",
    "points": "消费积分（每消费1元得1积分）",
    "monthly": "每月{gift}",
    "birthday_points": "生日月{value}倍积分",
    "birthday_gift": "生日礼：{gift}",
    "custom_gift": "{value}",
    "upgrade_gift": "升级礼：{gift}",
    "boost": "{value}",
    "service_lane": "专属客服（人工客服优先接入）",
}
PERKS_ALL = "全体会员："

# Holiday greetings: the greeting, then an offer only while a dated rule gives one that day.
HOLIDAY_GREETINGS = {
    "元旦": "🎉 元旦快乐！新的一年，感谢有您相伴。回复“权益”查看您的会员权益。",
    "春节": "🧧 新春快乐，万事如意！感谢您一直以来的支持。",
    "劳动节": "🌿 劳动节快乐！假期出游，别忘了会员积分可抵现哦。",
    "端午节": "🎋 端午安康！感谢您一直以来的支持。",
    "中秋节": "🥮 中秋快乐，花好月圆！感谢您一直以来的支持。",
    "国庆节": "🇨🇳 国庆快乐！感谢您一直以来的支持。",
}
HOLIDAY_GREETING_DEFAULT = "🎉 {name}快乐！感谢您一直以来的支持。"
HOLIDAY_BOOST = "今天起{name}：消费享{multiplier}倍积分，回复“积分”查看余额。"

# Every member-facing string (module.NAME) that mentions a coupon, gift, multiplier or
# benefit → what gives it: a benefit rule's code (models/benefits; ``boost:*`` any dated
# boost) or ``setting:<where>`` for a setting that applies it. A paused rule's string is not
# sent (its push is planned only from a grant; perks and greetings leave it out).
PROMISES: dict[str, str | tuple[str, ...]] = {
    # The points catalogue's items and what redeeming one gives (models/rewards.py).
    **{
        f"{module}.{name}": "setting:catalogue"
        for module, names in {
            "catalogue_page_copy": ("DONE_COUPON", "DONE_COUPON_SHOW", "EMPTY", "MORE"),
            "rewards_copy": (
                "DONE_COUPON",
                "EMPTY",
                "KIND_WHAT",
                "NONE_AFFORDABLE",
                "NOTHING_PENDING",
                "NOT_OPEN_YET",
                "PICK_UNKNOWN",
                "REFUSALS",
            ),
        }.items()
        for name in names
    },
    "catalogue_page_copy.PAGE_REFUSALS": "setting:catalogue",
    "centre_copy.BIRTHDAY_INTRO": "setting:points.birthday_multiplier",
    "centre_copy.DONE_BIRTHDAY": "setting:points.birthday_multiplier",
    "centre_copy.TIER_DISCOUNT": ("setting:tiers.discount", "setting:tiers.multiplier"),
    "benefit_copy.WELCOME_GIFT": "welcome",
    "benefit_copy.REPEAT_ORDER": "repeat_order",
    "benefit_copy.MONTHLY_TIER": "monthly_tier",
    "benefit_copy.BIRTHDAY_GIFT": ("birthday", "setting:points.birthday_multiplier"),
    "benefit_copy.BIRTHDAY_GREETING": "setting:points.birthday_multiplier",
    "benefit_copy.WINBACK_AT_RISK": "segment_entered",
    "benefit_copy.WINBACK_DORMANT": "segment_entered",
    "benefit_copy.ANNIVERSARY": "anniversary",
    "benefit_copy.PROFILE_DONE": "profile",
    "benefit_copy.SURVEY_DONE": "survey",
    "benefit_copy.GIFT_TITLE": ("welcome", "repeat_order", "anniversary", "profile", "survey"),
    "benefit_copy.GIFT_NOTE": ("welcome", "repeat_order", "anniversary", "profile", "survey"),
    "benefit_copy.BIRTHDAY_NOTE": "birthday",
    "benefit_copy.ORDER_BOOST": "boost:*",
    "benefit_copy.TIER_UPGRADED": "setting:tiers",
    "benefit_copy.UPGRADE_GIFT": "tier_upgrade",
    "benefit_copy.GROWTH_GIFT": "growth",
    "benefit_copy.HOLIDAY_BOOST": "boost:*",
    "benefit_copy.PERKS": (
        "setting:tiers.discount",
        "setting:tiers.multiplier",
        "monthly_tier",
        "setting:points.birthday_multiplier",
        "birthday",
        "setting:birthday_gifts",
        "tier_upgrade",
        "boost:*",
        "setting:console.priority_tiers",
    ),
    "copy.CAPABILITIES": "setting:points.birthday_multiplier",
    "copy.POINTS_NONE": "setting:tiers.multiplier",
    "copy.WELCOME_REFERRED": "setting:referrals",
    "chat_copy.BIRTHDAY_RECORDED": "setting:points.birthday_multiplier",
    "referral_copy.PENDING": "setting:referrals",
    "referral_copy.STATS": "setting:referrals",
    "referral_copy.STATS_PENDING": "setting:referrals",
    "referral_copy.REWARDED": "setting:referrals",
    "referral_copy.STAR": "setting:referrals",
    "referral_copy.LEDGER_REASONS": "setting:referrals",
    "referral_copy.PAGE_OFFER": "setting:referrals",
    "referral_copy.PAGE_OFFER_PLAIN": "setting:tiers",
    "copy.MENU_LAYOUT": "setting:referrals",
    "copy.MENU_NAMES": "setting:referrals",
}
# Strings that mention coupons or gifts without promising one, and why.
NOT_PROMISES = {
    "chat_copy.INTENT_NAMES": "names what a member may ask for (我的优惠券)",
    "chat_copy.GREETING": "offers to look up the member's own coupons",
    "copy.LEDGER_REASONS": "names a ledger entry already made",
    "copy.COUPONS_TITLE": "lists the coupons the member holds",
    "copy.COUPONS_LINE": "lists the coupons the member holds",
    "copy.COUPONS_NONE": "says the member holds none",
    "centre_copy.BACK_TO_COUPONS": "links to the member's own coupons",
    "centre_copy.COUPONS_NONE": "says the member holds none",
    "centre_copy.COUPON_CODE": "shows a coupon the member holds",
    "centre_copy.COUPON_HINT": "says how to use a coupon the member holds",
    "centre_copy.COUPON_NOT_FOUND": "says the coupon is not the member's",
    "centre_copy.COUPON_SHOW": "shows a coupon the member holds",
    "centre_copy.NAV_COUPONS": "names the page of the member's own coupons",
    "coupon_copy.EXPIRING_MANY": "reminds of coupons the member holds",
    "coupon_copy.EXPIRING_ONE": "reminds of a coupon the member holds",
    "coupon_copy.NOTE": "says how to use coupons the member holds",
    "coupon_copy.TITLE": "reminds of coupons the member holds",
    "cs_tools_copy.COMPENSATION_COUPONS": "a console label for staff",
    "cs_tools_copy.COMPENSATION_NO_COUPON": "a console message for staff",
}
# What ``PROMISES`` may name besides the benefit rules: settings that give what they promise.
SETTINGS = frozenset(
    {
        "setting:tiers",
        "setting:tiers.discount",
        "setting:tiers.multiplier",
        "setting:points.birthday_multiplier",
        "setting:birthday_gifts",
        "setting:referrals",
        "setting:console.priority_tiers",
        # The points catalogue: what marketers put in it, redeemed as its rules say.
        "setting:catalogue",
    }
)


def gift_text(coupon: str | None, points: int) -> str:
    """A gift in words: 一张【满300减50】 and/or 200 积分."""
    parts = []
    if coupon:
        parts.append(GIFT_COUPON.format(coupon=coupon))
    if points:
        parts.append(GIFT_POINTS.format(points=points))
    return GIFT_AND.join(parts)


def until_text(valid_until: datetime | None, zone: ZoneInfo) -> str:
    """（12月31日前有效） for a coupon valid until ``valid_until`` (its last local day)."""
    if valid_until is None:
        return ""
    return UNTIL.format(day=(valid_until.astimezone(zone) - timedelta(seconds=1)).date())


def perk_text(perk: Perk) -> str:
    """One perk in words."""
    return PERKS[perk.kind].format(value=perk.value, gift=gift_text(perk.value, perk.points))


def holiday_greeting(name: str, config: BenefitsConfig, month: int, day: int) -> str:
    """The greeting for holiday ``name`` on local ``month``-``day``, with the offer of a
    dated boost only while one is active on that day."""
    text = HOLIDAY_GREETINGS.get(name) or HOLIDAY_GREETING_DEFAULT.format(name=name)
    boosts = [b for b in config.boosts.values() if b.enabled and b.applies(month, day)]
    if boosts:
        best = max(boosts, key=lambda b: b.multiplier)
        text += HOLIDAY_BOOST.format(name=best.name, multiplier=f"{best.multiplier.normalize():f}")
    return text
