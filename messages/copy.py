"""Every sentence a member reads, in Simplified Chinese. Code elsewhere only picks and fills."""

from __future__ import annotations

from collections.abc import Sequence

from messages import referral_copy

HELP_TITLE = "您好，我是会员小助手。直接说出您的问题，或回复下列关键词："
HELP_COMING_SOON = "您好，我是会员小助手。更多会员服务即将上线，敬请期待！"
HELP_LINE = "【{keyword}】{what}"
HELP_FOOTER = "随时回复【{keyword}】查看本菜单。"

# What each capability does, shown in the help menu next to its first keyword.
CAPABILITIES = {
    "help": "查看本菜单",
    "points": "查询积分余额与即将过期的积分",
    "tier": "查看会员等级与升级进度",
    "benefits": "查看当前等级的会员权益",
    "coupons": "查看可用的优惠券",
    "recap": "查看您的年度会员回顾",
    "referral": "获取专属推荐链接与二维码",
    "my_referrals": "查看推荐好友的进度与奖励",
    "redeem": "查看积分能兑换的礼品，回复编号兑换",
    "birthday": "登记生日，生日月消费享多倍积分",
    "opt_out": "退订营销推送（服务通知照常）",
    "human": "转接人工客服",
}

WELCOME = "欢迎关注！感谢您成为我们的会员 🎉"
WELCOME_REFERRED = "欢迎关注！您已通过好友邀请成为我们的会员 🎉 完成首单即可领取新人礼。"
WELCOME_BACK = "欢迎回来！很高兴再次见到您 🎉"
FALLBACK = "抱歉，我没有听懂您的意思。"
NON_TEXT_FALLBACK = "收到啦！目前我只能看懂文字消息。"
BUSY = "系统繁忙，请稍后再试。"


def help_menu(entries: Sequence[tuple[str, str]], help_keyword: str) -> str:
    """The help menu: one line per capability as (keyword, capability name)."""
    if not entries:
        return HELP_COMING_SOON
    lines = [HELP_TITLE]
    lines += [
        HELP_LINE.format(keyword=keyword, what=CAPABILITIES[name]) for keyword, name in entries
    ]
    lines.append(HELP_FOOTER.format(keyword=help_keyword))
    return "\n".join(lines)


# 积分
POINTS_BALANCE = "您当前可用积分：{balance:,} 分"
# Pushed 30 days before the tier re-evaluation to members who would drop (a service notice).
TIER_KEEP_BOTH = (
    "您的【{tier}】将于{day:%m月%d日}重新评定：再消费 {orders} 次或 ¥{yuan:,} 即可保持{tier}。"
)
TIER_KEEP_ORDERS = "您的【{tier}】将于{day:%m月%d日}重新评定：再消费 {orders} 次即可保持{tier}。"
TIER_KEEP_TITLE = "会员等级保级提醒"
TIER_KEEP_NOTE = "回复“等级”查看您的等级进度。"
# Pushed 30 and 7 days before points expire (a service notification).
POINTS_EXPIRY_REMINDER = (
    "⏰ 您有 {points:,} 积分将于 {day:%Y年%m月%d日} 到期，记得尽快使用哦！回复“积分”查看详情。"
)
POINTS_EXPIRY_TITLE = "您的积分即将到期"
POINTS_EXPIRY_NOTE = "到期前换掉吧：回复“积分兑换”看看积分能换什么。"
POINTS_EXPIRING = "⏰ 其中 {points:,} 分将于 {day:%Y年%m月%d日} 到期，请尽快使用"
POINTS_RECENT_TITLE = "最近变动："
POINTS_RECENT_LINE = "· {day:%m-%d} {reason} {points:+,}"
POINTS_NONE = "您目前还没有积分。每消费1元即可获得1积分，会员等级越高积分倍数越高。"
POINTS_HOW_TO_BIND = "已在门店消费？发送收银小票上的8位绑定码，即可同步您的积分与消费记录。"
LEDGER_REASONS = {
    "expire": "积分到期",
    "refund": "退款扣回",
    "redeem": "积分兑换",
    "return": "兑换取消，积分退回",
    "adjust": "积分调整",
    "bonus": "奖励积分",
}


def ledger_reason(kind: str, reason: str) -> str:
    """What a member reads for a ledger entry: an order, an adjustment or a bonus by its
    recorded reason (a referral code in words; a benefit rule's gift by its name), any other
    entry by its kind."""
    if kind in ("earn", "adjust", "bonus"):
        return referral_copy.ledger_reason(reason) or reason
    return LEDGER_REASONS.get(kind, reason)


# 等级 / 权益
TIER_CURRENT = "您当前是【{name}】（{discount}）"
TIER_NEXT_BOTH = "再消费 {orders} 次或 ¥{yuan:,} 即可升级为{next}"
TIER_NEXT_ORDERS = "再消费 {orders} 次即可升级为{next}"
TIER_NEXT_TOP = "再消费 {orders} 次，或年度消费进入前{percent:g}%，即可升级为{next}"
TIER_TOP = "您已是最高等级，感谢您一直以来的支持！"
TIER_WINDOW = "（按近{months}个月的消费计算）"
# Pushed when an order lifts a member's tier (a service notification: template or window).
TIER_UPGRADED_TITLE = "恭喜您升级为{name}"
TIER_UPGRADED_NOTE = "感谢您的支持，回复“权益”查看全部会员权益。"
BENEFITS_TITLE = "【{name}】专享权益："
BENEFITS_LINE = "· {benefit}"
BENEFITS_NEXT = "升级为{next}可享：{benefits}"

# 我的券
COUPONS_TITLE = "您有 {count} 张可用优惠券："
COUPONS_LINE = "· {name}（券码 {code}），有效期至 {day:%Y-%m-%d}"
COUPONS_NONE = "您暂时没有可用的优惠券。"

# 绑定会员
BIND_OK = "绑定成功！您的会员信息已同步，当前积分 {balance:,} 分。"
BIND_INVALID = "绑定码不正确，请核对收银小票上的8位绑定码后重试。"
BIND_EXPIRED = "这个绑定码已过期，请向门店索取新的绑定码。"
BIND_USED = "这个绑定码已被使用。如有疑问，请回复【人工】联系客服。"
BIND_TAKEN = "您的微信已绑定其他会员账号。如需更换，请回复【人工】联系客服。"
BIND_THROTTLED = "尝试次数过多，请 1 小时后再试。"


def fen_to_yuan(fen: int) -> int | float:
    """Fen as yuan for display: whole yuan without decimals."""
    return fen // 100 if fen % 100 == 0 else fen / 100


# Custom menu: top-level button titles and the capabilities under each.
MENU_LAYOUT = (
    # Four CLICK buttons: the member centre's VIEW button makes five, WeChat's limit.
    ("会员中心", ("points", "redeem", "coupons", "tier")),
    ("推荐有礼", ("referral",)),
    ("服务", ("benefits", "help", "human")),
)
MENU_NAMES = {
    "points": "积分查询",
    "tier": "会员等级",
    "benefits": "会员权益",
    "coupons": "我的券",
    "redeem": "积分兑换",
    "return": "兑换取消，积分退回",
    "referral": "推荐有礼",
    "help": "使用帮助",
    "human": "人工客服",
}
