"""The member centre's points catalogue (积分兑换, bot/pages/rewards.py): the list, the
confirmation, the result and the refusals. Prices, what a member receives, how to collect it
and most refusals are worded once, in messages/rewards_copy.py, for chat and page alike; here
only what a page says differently (no 「回复…」: a page has links for that)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from messages import rewards_copy
from models.rewards import Refusal

NAV_REWARDS = "积分兑换"

# The list.
BALANCE_LABEL = "可用积分"
CAN_REDEEM = "可兑换"
SAVE_UP = "再攒一点就能兑换"
SHORT = "还差 {shortfall:,} 积分"
STOCK_LEFT = "仅剩 {stock:,} 件"
LIMIT = "{period}限兑 {count} 次"
LIMIT_EVER = "每人限兑 {count} 次"
REDEEM = "兑换"
EMPTY = "目前暂无可兑换的礼品，上新后会在这里展示。结账时也可告诉店员使用积分，由门店为您抵扣。"
MORE = "更多礼品"

# The confirmation.
CONFIRM_HEADING = "确认兑换"
CONFIRM_PRICE = "兑换价格"
CONFIRM_WHAT = "您将获得"
CONFIRM_COUPON = "优惠内容"
CONFIRM_BALANCE = "当前积分"
CONFIRM_AFTER = "兑换后剩余"
CONFIRM_SUBMIT = "确认兑换"
CONFIRM_BACK = "再看看"
CONFIRM_NOTE = "确认后立即扣除积分，兑换成功后不能自行撤销。"

# The result.
DONE_HEADING = "兑换成功"
DONE_SPENT = "已扣除积分"
DONE_BALANCE = "当前积分"
DONE_COUPON = "已放入“我的券”，有效期至 {day:%Y年%m月%d日}。"
DONE_COUPON_SHOW = "查看券码"
PICKUP_LABEL = "提货码"
STATUS = {
    "picked_up": "已领取",
    "shipped": "已寄出",
    "cancelled": "已取消，积分已退回您的账户",
}
REDEMPTION_NOT_FOUND = "没有找到这笔兑换记录。"
BACK_TO_CATALOGUE = "返回积分兑换"

# Refusals: chat's words (rewards_copy.REFUSALS) but where chat says what to reply.
REFUSED_HEADING = "暂时无法兑换"
PAGE_REFUSALS = {
    "unknown": "这件礼品已下架。",
    "retired": "这件礼品已下架。",
    "not_in_tier": "这件礼品仅限指定等级会员兑换。",
    "price_changed": "这件礼品的兑换积分刚刚调整，请返回列表查看最新价格后再兑换。",
}


def refusal(refused: Refusal, zone: ZoneInfo) -> str:
    """Why the member cannot redeem, plainly, as chat says it where the words fit a page."""
    if refused.reason in PAGE_REFUSALS:
        return PAGE_REFUSALS[refused.reason]
    return rewards_copy.refusal(refused, zone)


def limit(count: int, period: str) -> str:
    """「每月限兑 1 次」, 「每人限兑 2 次」."""
    if period == "ever":
        return LIMIT_EVER.format(count=count)
    return LIMIT.format(period=rewards_copy.LIMIT_PERIODS.get(period, ""), count=count)
