"""Which service notices can go as template messages, the WeChat template a brand applies
for to carry each, and the fields the code fills (the values ``[delivery.templates.<purpose>]``
maps the template's keys to).

As shipped no template is configured: a service notice to a member who has not written in
48 hours then has no channel and is skipped (``no_channel``; bot/push/outbox.py). The README,
the console's template page and the dashboard say so from this table, and a test checks each
purpose's pushes carry exactly these fields.

Titles are those of WeChat's template library (模板库) for the industry 零售/会员; a brand picks
the closest template there, or applies for one by that title.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TemplatePurpose:
    """A push purpose a template message can carry."""

    purpose: str
    # What the push is, and the library template to apply for (staff read both).
    what: str
    library_title: str
    # The push's fields, each with what it holds.
    fields: dict[str, str]


TEMPLATE_PURPOSES: tuple[TemplatePurpose, ...] = (
    TemplatePurpose(
        "tier_upgraded",
        "升级祝贺（达到新等级时）",
        "会员等级变更通知",
        {"title": "标题", "tier": "新等级", "benefits": "新等级权益", "note": "备注"},
    ),
    TemplatePurpose(
        "birthday",
        "生日祝福与生日礼券",
        "生日祝福",
        {"title": "标题", "content": "祝福与礼券（券码、有效期）", "note": "备注"},
    ),
    TemplatePurpose(
        "points_expiring",
        "积分到期提醒（30天、7天前）",
        "积分到期提醒",
        {"title": "标题", "points": "到期积分", "day": "到期日", "note": "备注"},
    ),
    TemplatePurpose(
        "coupon_expiring",
        "优惠券到期提醒（到期前3天）",
        "优惠券到期提醒",
        {
            "title": "标题",
            "coupons": "券名",
            "count": "张数",
            "day": "有效期至",
            "note": "备注",
        },
    ),
    TemplatePurpose(
        "tier_keeping",
        "保级提醒（复评前30天）",
        "会员等级变更提醒",
        {"title": "标题", "tier": "当前等级", "content": "保级所需", "note": "备注"},
    ),
    TemplatePurpose(
        "referral_rewarded",
        "推荐奖励到账",
        "会员积分变动提醒",
        {"title": "标题（奖励说明）", "points": "奖励积分"},
    ),
    TemplatePurpose(
        "referral_star",
        "推荐之星奖励",
        "会员积分变动提醒",
        {"title": "标题（奖励说明）", "points": "奖励积分"},
    ),
    TemplatePurpose(
        "order_credited",
        "订单积分到账（每笔已付订单）",
        "会员积分变动提醒",
        {
            "title": "标题",
            "order": "订单号",
            "points": "本单积分",
            "balance": "积分余额",
            "content": "说明",
            "note": "备注",
        },
    ),
    TemplatePurpose(
        "benefit_granted",
        "礼遇到账（复购赠礼）",
        "会员权益到账通知",
        {"title": "标题", "content": "礼遇内容", "note": "备注"},
    ),
    TemplatePurpose(
        "monthly_tier",
        "月度会员礼遇（每月1日）",
        "会员权益到账通知",
        {"title": "标题", "content": "礼遇内容", "note": "备注"},
    ),
    TemplatePurpose(
        "anniversary",
        "入会纪念日礼遇",
        "会员权益到账通知",
        {"title": "标题", "content": "礼遇内容", "note": "备注"},
    ),
    TemplatePurpose(
        "behaviour_points",
        "行为积分到账（完善资料、参与调研）",
        "会员积分变动提醒",
        {"title": "标题", "content": "奖励说明", "note": "备注"},
    ),
    TemplatePurpose(
        "service_reply",
        "客服回复（会员48小时未互动时）",
        "客服回复通知",
        {"title": "标题", "content": "回复内容", "note": "备注"},
    ),
)

BY_PURPOSE = {entry.purpose: entry for entry in TEMPLATE_PURPOSES}
