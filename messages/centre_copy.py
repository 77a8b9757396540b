"""What the member centre (会员中心, bot/pages/centre.py) says: page titles, labels and the pages
for sign-in trouble. Values are formatted by the pages and escaped there."""

from __future__ import annotations

from models.rules import CouponKind

# The custom menu's VIEW button that opens the centre (bot/wechat/menu.py).
MENU_CENTRE = "我的会员中心"

PAGE_TITLE = "会员中心"
NAV_CARD = "会员卡"
NAV_CODE = "会员码"
NAV_COUPONS = "优惠券"
NAV_POINTS = "积分明细"
NAV_ORDERS = "消费记录"
NAV_PROFILE = "我的资料"

# The card.
HELLO_NAMED = "{name}，您好"
HELLO = "尊敬的会员，您好"
TIER_DISCOUNT = "{discount} · {multiplier}倍积分"
TIER_SINCE = "{day:%Y年%m月%d日}起"
NEXT_HEADING = "升级进度"
KEEP_HEADING = "保级条件"
KEEP_BASIC = "{tier}无需保级。"
KEEP_BOTH = "近{months}个月消费满 {orders} 次或 ¥{yuan:,}，即可保持{tier}。"
KEEP_ORDERS = "近{months}个月消费满 {orders} 次，即可保持{tier}。"
KEEP_TOP = "近{months}个月消费满 {orders} 次，或消费进入前{percent:g}%，即可保持{tier}。"
KEEP_MET = "您已满足保级条件。"
KEEP_SHORT_BOTH = "还差 {orders} 次或 ¥{yuan:,}。"
KEEP_SHORT_ORDERS = "还差 {orders} 次。"
WINDOW_STATS = "近{months}个月：消费 {orders} 次，共 ¥{yuan:,}"
BALANCE_LABEL = "积分余额"
EXPIRING_HEADING = "即将过期"
EXPIRING_LINE = "{points} 积分将于 {day:%Y年%m月%d日} 后过期"
EXPIRING_NONE = "近期没有即将过期的积分。"
EXPIRY_RULE_ROLLING = "积分自获得起 {months} 个月内有效。"
EXPIRY_RULE_YEAR_END = "积分在获得次年的12月31日后过期。"

# The member code.
CODE_HEADING = "会员码"
CODE_HINT = "结账时向收银员出示，积分自动累计"
CODE_ROTATES = "会员码每分钟自动更新，截图无效"
CODE_REFRESH = "{seconds} 秒后更新"
CODE_REFRESH_SOON = "正在更新…"
CODE_OFFLINE = "网络不可用，会员码暂未更新，请稍后重试"

# Coupons.
COUPONS_USABLE = "可使用"
COUPONS_UPCOMING = "未到使用时间"
COUPONS_USED = "已使用"
COUPONS_EXPIRED = "已过期"
COUPONS_REVOKED = "已失效"
COUPONS_NONE = "暂无可用优惠券。"
COUPON_UNTIL = "有效期至 {day:%Y年%m月%d日}"
COUPON_FROM = "{day:%Y年%m月%d日}起可用"
COUPON_USED_ON = "{day:%Y年%m月%d日}已使用"
COUPON_SHOW = "出示券码"
COUPON_CODE = "券码 {code}"
COUPON_HINT = "结账时向收银员出示此券码"
COUPON_NOT_FOUND = "没有找到这张优惠券。"
BACK_TO_COUPONS = "返回我的优惠券"

# Points history and orders.
POINTS_NONE = "还没有积分记录。"
POINTS_BALANCE_AFTER = "余额 {balance}"
ORDERS_NONE = "还没有消费记录。"
ORDER_LINE = "¥{yuan:,} · {channel}"
ORDER_POINTS = "+{points} 积分"
ORDER_REFUNDED = "已退款 ¥{yuan:,}"
OLDER = "更早的记录"
CHANNELS = {"pos": "门店", "store": "门店", "online": "线上", "mini": "小程序", "app": "App"}

# Profile.
NAME_LABEL = "姓名"
PHONE_LABEL = "手机号"
NOT_GIVEN = "未填写"
BIRTHDAY_LABEL = "生日"
BIRTHDAY_VALUE = "{month}月{day}日"
BIRTHDAY_LOCKED = "生日登记后如需修改，请在公众号回复“人工”联系客服。"
BIRTHDAY_INTRO = "登记生日，生日当月消费享{multiplier}倍积分（登记后不能自行修改）。"
BIRTHDAY_MONTH = "月"
BIRTHDAY_DAY = "日"
BIRTHDAY_YEAR = "年份（选填）"
BIRTHDAY_SUBMIT = "下一步"
BIRTHDAY_CONFIRM = "您的生日是 {month} 月 {day} 日，对吗？登记后不能自行修改。"
BIRTHDAY_CONFIRM_YES = "确认登记"
BIRTHDAY_CONFIRM_NO = "返回修改"
BIRTHDAY_BAD = "请选择一个有效的日期。"
BIRTHDAY_FUTURE = "这个日期还没到哦，请重新选择。"
MARKETING_LABEL = "活动推送"
MARKETING_ON = "接收中"
MARKETING_OFF = "已退订"
MARKETING_STOP = "退订活动推送"
MARKETING_START = "恢复活动推送"
MARKETING_NOTE = "积分变动、订单等服务通知不受影响。"
DONE_BIRTHDAY = "生日已登记，生日当月消费可享多倍积分。"
DONE_OPTED_OUT = "已为您退订活动推送，积分变动、订单等服务通知仍会照常发送。"
DONE_OPTED_IN = "已为您恢复活动推送，会员活动和专属优惠会第一时间通知您。"

# Sign-in trouble and other pages that show nothing of anyone.
NOT_MEMBER_TITLE = "您还不是会员"
NOT_MEMBER_TEXT = "请先关注公众号并发送任意消息，即可成为会员，之后从菜单“会员中心”进入。"
SNAPSHOT_TITLE = "请使用完整服务"
SNAPSHOT_TEXT = "当前为预览模式，请点击页面下方“使用完整服务”后再打开会员中心。"
LINK_EXPIRED_TITLE = "链接已失效"
LINK_EXPIRED_TEXT = "这个登录链接已经用过或已过期，请从公众号菜单“会员中心”重新进入。"
SESSION_EXPIRED_TITLE = "登录已过期"
SESSION_EXPIRED_TEXT = "为保护您的账户安全，请重新进入会员中心。"
SESSION_INVALID_TITLE = "无法确认您的身份"
SESSION_INVALID_TEXT = "请从公众号菜单“会员中心”重新进入。"
REENTER = "重新进入会员中心"
UNAVAILABLE_TITLE = "暂时无法登录"
UNAVAILABLE_TEXT = "微信授权暂时不可用，请稍后从菜单重新进入。"
FORM_EXPIRED_TITLE = "页面已过期"
FORM_EXPIRED_TEXT = "请返回会员中心后重试。"
NOT_FOUND_TITLE = "页面不存在"
NOT_FOUND_TEXT = "请从公众号菜单“会员中心”进入。"


def yuan(fen: int) -> int | float:
    """Fen as yuan for display: whole yuan without decimals."""
    return fen // 100 if fen % 100 == 0 else fen / 100


def coupon_condition(kind: CouponKind | None) -> str:
    """A coupon kind's rule in words: 满300元减50元, 无门槛减10元, 9.5折."""
    if kind is None:
        return ""
    if kind.type == "threshold":
        return f"满{yuan(kind.threshold_fen)}元减{yuan(kind.discount_fen)}元"
    if kind.type == "cash":
        return f"无门槛减{yuan(kind.discount_fen)}元"
    rate = (100 - kind.percent_off) / 10
    return f"{rate:g}折"
