"""What the bot says when it understands members in their own words (or not quite), in
Simplified Chinese: clarifications, small talk, points questions, birthday, push consent."""

from __future__ import annotations

from collections.abc import Sequence

# Short names of what a member can ask for, as numbered choices.
INTENT_NAMES = {
    "points": "查询积分",
    "points_expiry": "查看积分到期时间",
    "points_missing": "查询积分到账情况",
    "tier": "查看会员等级与升级进度",
    "benefits": "查看会员权益",
    "coupons": "查看我的优惠券",
    "recap": "查看年度回顾",
    "referral": "获取推荐链接",
    "my_referrals": "查看我的推荐",
    "human": "转人工客服",
    "help": "查看全部功能",
    "redeem": "查看积分能兑换的礼品",
    "reward_pick": "兑换积分礼品",
    "birthday": "登记生日",
    "opt_out": "退订营销推送",
    "opt_in": "恢复营销推送",
    "faq": "常见问题",
}
# Offered when the bot has no idea at all what the member meant.
MENU_CHOICES = ("points", "tier", "coupons", "benefits", "human")

CLARIFY_TITLE = "抱歉，我不太确定您的意思。您是想："
NOT_UNDERSTOOD_TITLE = "抱歉，我没有听懂您的意思。我可以帮您："
CHOICE_LINE = "{number} {name}"
CLARIFY_FOOTER = "回复数字即可，也可以换个说法告诉我。"
# Two answers in one reply are separated by a blank line and this rule.
SEPARATOR = "\n\n"


def choices(title: str, names: Sequence[str]) -> str:
    """A numbered question: the title, one line per choice, and how to answer."""
    lines = [title]
    lines += [CHOICE_LINE.format(number=n, name=name) for n, name in enumerate(names, start=1)]
    lines.append(CLARIFY_FOOTER)
    return "\n".join(lines)


GREETING = "您好！我是会员小助手 😊 查积分、看等级、找优惠券，直接告诉我就好。"
THANKS = "不客气，很高兴能帮到您！还有需要随时找我 😊"
DECLINE = "好的，有需要随时找我。"
VOICE_UNRECOGNISED = "语音暂时无法识别，请发送文字。"

# 积分什么时候过期 / 积分怎么还没到账 / 积分怎么用
EXPIRY_LINE = "· {points:,} 分将于 {day:%Y年%m月%d日} 到期"
EXPIRY_TITLE = "您即将到期的积分："
EXPIRY_NONE = "您目前没有即将到期的积分。"
EXPIRY_RULE_ROLLING = "积分自获得之日起 {months} 个月内有效，先到期的积分会优先使用。"
EXPIRY_RULE_YEAR_END = "积分有效期至获得次年的 12 月 31 日，先到期的积分会优先使用。"
ORDERS_TITLE = "您最近的订单与积分："
ORDER_LINE = "· {day:%m-%d} 订单 {order}（¥{yuan:,}）{points:+,} 分"
ORDERS_NONE = "我们还没有收到您的订单记录。"
ORDERS_NOTE = (
    "订单由门店或商城同步，同步后积分即到账。如果某笔订单不在上面，请回复【人工】，客服会为您核实。"
)

# 权益 of a named tier
BENEFITS_OF = "【{name}】专享权益："

# 生日
BIRTHDAY_ASK = "请告诉我您的生日，例如：3月5日 或 1990年3月5日。"
BIRTHDAY_CONFIRM = "您的生日是 {month} 月 {day} 日，对吗？回复“是”确认登记（登记后不能自行修改）。"
BIRTHDAY_RECORDED = (
    "已登记您的生日：{month} 月 {day} 日 🎂 从下个月起，生日当月消费可享{multiplier}倍积分。"
)
BIRTHDAY_ALREADY = "您的生日已登记为 {month} 月 {day} 日。如需修改，请回复【人工】联系客服。"
BIRTHDAY_BAD_DATE = "{month} 月 {day} 日不是一个有效的日期，请重新告诉我您的生日，例如：3月5日。"
BIRTHDAY_FUTURE = "这个日期还没到哦，请重新告诉我您的生日，例如：1990年3月5日。"
BIRTHDAY_NOT_CONFIRMED = "好的，生日没有登记。需要时再告诉我您的生日即可。"
# Words that confirm a birthday the bot repeated back.
YES_WORDS = ("是", "是的", "对", "对的", "确认", "没错", "嗯", "好", "好的", "yes", "y", "ok")

# 退订 / 恢复推送
OPTED_OUT = "已为您退订营销推送。积分变动、订单等服务通知仍会照常发送。回复“恢复推送”可重新接收。"
ALREADY_OPTED_OUT = "您已退订营销推送。回复“恢复推送”可重新接收。"
OPTED_IN = "已为您恢复营销推送，会员活动和专属优惠会第一时间通知您。"
ALREADY_OPTED_IN = "您正在接收营销推送，无需恢复。回复“退订”可停止接收。"
