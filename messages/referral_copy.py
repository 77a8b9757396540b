"""Referral words (老带新): chat answers, the share page, and the reward pushes."""

from __future__ import annotations

# 推荐 / 邀请: the member's link; the QR image follows as a second message when it was made.
SHARE = (
    "🎁 邀请好友一起成为会员！\n"
    "您的专属邀请链接：{url}\n"
    "好友通过您的二维码关注并完成首单{window}，您可获得{points}积分{newcomer}。\n"
    "二维码图片随后发送，长按即可转发给好友。"
)
SHARE_NO_IMAGE = "二维码图片暂时无法生成，您也可以直接转发上面的链接。"
WINDOW_AFTER = "（{days}天后无退货）"
NEWCOMER_COUPON = "，好友可获得【{coupon}】"
NEWCOMER_POINTS = "，好友可获得{points}积分"
PENDING = "您有{count}位好友已下单，奖励将在退货期结束后发放（预计{points}积分）。"

# 我的推荐
STATS = (
    "👥 我的推荐\n"
    "已邀请关注：{joined}位\n"
    "已完成首单：{bought}位\n"
    "获得推荐奖励：{points}积分\n"
    "本季度成功推荐：{quarter}位"
)
STATS_PENDING = "待发放：{count}位好友的奖励（退货期结束后到账）"
STATS_STAR = "🌟 您是本季度的推荐之星！"
STATS_TO_STAR = "本季度再成功推荐{left}位，即可成为推荐之星，额外获得{bonus}积分。"
STATS_NONE = "您还没有邀请过好友。回复“推荐”获取您的专属邀请二维码。"

# Pushes to the referrer.
REWARDED = "🎉 您推荐的好友已完成首单，{points}积分推荐奖励已到账！"
STAR = "🌟 恭喜您成为{quarter}推荐之星！本季度已成功推荐{count}位好友，额外奖励{points}积分已到账。"

# Ledger reasons, as the member sees them under 积分.
# Ledger and coupon reasons the referral programme records (codes in models/referrals.py).
LEDGER_REASONS = {
    "referral:referrer": "推荐好友奖励",
    "referral:newcomer": "好友推荐新人礼",
    "referral:star": "推荐之星奖励 {quarter}",
    "referral:clawed_back": "好友订单退款，推荐奖励收回",
}


def ledger_reason(reason: str) -> str | None:
    """A referral reason code in words (``referral:star:2026Q3`` names its quarter), or None
    for a reason that is not the referral programme's."""
    code, _, quarter = reason.partition(":star:")
    if quarter:
        return LEDGER_REASONS["referral:star"].format(quarter=quarter)
    return LEDGER_REASONS.get(code)


# The page a shared link opens (for the friend).
PAGE_TITLE = "邀请您加入{brand}"
PAGE_HEADING = "好友邀请您加入{brand}"
PAGE_OFFER = "关注公众号即可成为会员，完成首单可获得{gift}。"
PAGE_OFFER_PLAIN = "关注公众号即可成为会员，享受积分、等级与专属礼遇。"
PAGE_SCAN = "长按识别二维码，关注公众号"
PAGE_NO_QR = "二维码已过期，请让好友在公众号内回复“推荐”获取新的二维码。"
PAGE_NOT_FOUND_TITLE = "邀请不存在"
PAGE_NOT_FOUND = "邀请链接无效，请向好友重新获取。"
