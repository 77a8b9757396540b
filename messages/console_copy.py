"""The console's answers to staff actions, and canned replies, in Simplified Chinese.

The pages' own labels are in bot/console/templates/ (markup and its words together).
"""

from __future__ import annotations

LOGIN_FAILED = "用户名或密码错误。"
LOGIN_PAUSED = "登录失败次数过多，请15分钟后再试。"
ALREADY_TAKEN = "该会话已被其他客服接入。"
ALREADY_ENDED = "该会话已结束。"
NOT_YOURS = "该会话不在您名下，请先接入。"
NO_SUCH_AGENT = "没有这位客服。"
WINDOW_CLOSED = "会员的48小时回复窗口已关闭或本轮回复次数已用完，请改用模板消息。"
NO_TEMPLATE = "尚未配置客服回复模板（[delivery.templates.service_reply]）。"
SEND_FAILED = "微信暂时无法发送，请稍后重试。"
REPLY_LENGTH = "回复内容需为1-2000字。"
TEMPLATE_LENGTH = "模板消息内容需为1-200字。"

# Quick replies offered under the reply box.
CANNED_REPLIES = [
    "您好，我是客服，很高兴为您服务，请问有什么可以帮您？",
    "请您提供一下订单号，我马上为您查询。",
    "已为您登记，处理结果会在24小时内通知您。",
    "非常抱歉给您带来不便，我们会尽快为您处理。",
    "感谢您的耐心等待，还有其他可以帮您的吗？",
]

# The service-reply template's fields (keys named in [delivery.templates.service_reply]).
TEMPLATE_TITLE = "客服回复"
TEMPLATE_NOTE = "如有疑问，回复“人工”联系客服。"


def template_fields(text: str) -> dict[str, str]:
    """The fields a service-reply template message can draw on."""
    return {"title": TEMPLATE_TITLE, "content": text, "note": TEMPLATE_NOTE}
