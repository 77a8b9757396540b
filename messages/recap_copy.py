"""The annual recap's words (年度消费回顾): its push and its page, in Simplified Chinese.

Code elsewhere only picks and fills; the page's markup is in bot/pages/recap.py.
"""

from __future__ import annotations

# The push (a marketing push: quiet hours and caps apply). The same words for every member, so
# members outside their window share mass sends; each member's link comes in chat (CHAT_LINK).
PUSH = "📊 您的{year}年度会员回顾已生成！全年消费、积分与等级变化一目了然，回复“年度回顾”即可查看。"
# The answer to 年度回顾 in chat: the member's own link, or why there is none.
CHAT_LINK = "📊 您的{year}年度会员回顾：{url}\n（专属链接，请勿转发）"
CHAT_NONE = "您还没有年度会员回顾：每年1月初，我们会为上一年有消费或积分变动的会员生成专属报告。"

PAGE_TITLE = "{year} 年度会员回顾"
HEADING = "您的 {year} 年度回顾"
INTRO = "感谢您这一年的陪伴，这是属于您的年度账单。"

ORDERS_LABEL = "全年订单"
ORDERS_VALUE = "{orders:,} 笔"
SPEND_LABEL = "全年消费"
SPEND_VALUE = "¥{yuan}"
POINTS_EARNED_LABEL = "获得积分"
POINTS_USED_LABEL = "使用积分"
POINTS_VALUE = "{points:,} 分"

# The place among members is shown only when it flatters: "top 95%" would not.
RANK_SHOWN_UP_TO_PERCENT = 50
RANK_TOP = "您的年度消费位列全体会员前 {percent}%"
RANK_THANKS = "每一笔消费都是对我们的支持，谢谢您！"

TIER_HEADING = "会员等级"
TIER_KEPT = "全年保持【{tier}】"
TIER_MOVED = "从【{start}】到【{end}】"
TIER_STEP = "{day:%m月%d日}　{old} → {new}"

CHART_HEADING = "每月消费（元）"
CHART_LABEL = "{year}年每月消费柱状图"
CHART_EMPTY = "今年暂无消费"
MONTH = "{month}月"

FOOTER = "本页面为您的专属链接，请勿转发给他人。"

NOT_FOUND_TITLE = "页面不存在"
NOT_FOUND_TEXT = "链接无效或已失效，请从公众号消息中重新打开。"


def yuan(fen: int) -> str:
    """An amount in fen as yuan with thousands separators, without ".00" for whole yuan."""
    whole, cents = divmod(fen, 100)
    return f"{whole:,}" if cents == 0 else f"{whole:,}.{cents:02d}"


def compact_yuan(fen: int) -> str:
    """A short amount for a chart label: yuan, or 万 (ten thousands) from ¥10,000."""
    value = fen / 100
    if value >= 10_000:
        return f"{value / 10_000:.1f}万"
    return f"{round(value):,}"


def rank_line(top_percent: int | None) -> str:
    """The sentence about the member's place among the year's spenders."""
    if top_percent is not None and top_percent <= RANK_SHOWN_UP_TO_PERCENT:
        return RANK_TOP.format(percent=top_percent)
    return RANK_THANKS
