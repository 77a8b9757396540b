"""Satisfaction questions and the answers to them (满意度, NPS), in Simplified Chinese."""

from __future__ import annotations

# The questions, as pushed (one digit answers them; no link, no form).
CSAT_AFTER_ORDER = (
    "您好！您对最近一次购物（订单 {order}）满意吗？\n"
    "请直接回复数字1-5打分：5=非常满意，1=非常不满意。"
)
CSAT_AFTER_CONVERSATION = (
    "您好！刚才的客服服务您满意吗？\n请直接回复数字1-5打分：5=非常满意，1=非常不满意。"
)
NPS = "您有多大可能把我们推荐给亲友？\n请直接回复数字0-10打分：10=极有可能，0=完全不可能。"

# What was not an answer, once; after that the question lapses.
REPROMPT = {
    "csat": "请回复数字1-5为本次体验打分（例如回复“5”），我们会认真对待您的每一条反馈。",
    "nps": "请回复数字0-10打分（例如回复“9”），感谢您的支持！",
}

THANKS = "感谢您的评价！"
THANKS_LOW = "非常抱歉给您带来不好的体验，客服同事会尽快联系您跟进处理。"
ASK_COMMENT = "方便的话，请直接回复文字告诉我们原因或建议（回复“跳过”结束）。"
COMMENT_THANKS = "已收到您的建议，谢谢！"
SKIP_WORDS = ("跳过", "不用了", "没有", "无", "算了")
