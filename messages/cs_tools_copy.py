"""Customer service's tools in the console (work list, member card, compensation, canned
replies, staff accounts): answers to staff actions, and the canned replies' defaults."""

from __future__ import annotations

# The work list (bot/console/followup_views.py).
FOLLOW_UP_REFUSED = {
    "missing": "没有这条跟进任务。",
    "closed": "该跟进任务已完成。",
    "not_yours": "该跟进任务已分配给其他客服。",
    "bad_outcome": "请选择处理结果。",
}
NOTE_LENGTH = "备注最多500字。"
CONNECTED_CHOICE = "请选择是否接通。"
NO_SUCH_AGENT = "没有这位客服。"

# Member search and compensation (bot/console/member_views.py).
QUERY_LENGTH = "请输入1-64个字符进行搜索。"
COMPENSATION_REASON = "请填写补偿原因（1-200字）。"
COMPENSATION_POINTS = "积分调整需为非零整数，且不超过单次上限 {limit}。"
COMPENSATION_NOT_ALLOWED = "您的角色不能发放补偿。"
COMPENSATION_LIMIT = "已达今日补偿上限（{what}）。"
COMPENSATION_COUPONS = "补偿券"
COMPENSATION_POINTS_NAME = "补偿积分"
INSUFFICIENT_POINTS = "会员积分不足，无法扣减 {points} 分（当前 {balance} 分）。"
DOUBLE_SUBMIT = "该补偿已提交过，未重复发放。"
COMPENSATION_DONE = "已发放。"
COMPENSATION_FORM_KEY = "表单已失效，请刷新页面后重试。"
COMPENSATION_NO_COUPON = "尚未配置补偿券（[console.compensation] coupon_kind）。"
# What the member reads for a compensation in their points history (积分).
LEDGER_COMPENSATION = "客服补偿"
LEDGER_CORRECTION = "积分更正"

# Canned replies (bot/console/canned_views.py).
CANNED_GROUP = "分组需为1-16个字。"
CANNED_TEXT = "回复内容需为1-500字。"
CANNED_PLACEHOLDER = "不认识的占位符：{names}。可用：{{name}}（会员称呼）、{{tier}}（会员等级）。"
CANNED_BRACES = "花括号不成对：占位符写作 {name}、{tier}，花括号本身写作 {{ 或 }}。"
# What {name} becomes for a member who has not told us their name.
NAME_FALLBACK = "会员"
# Today's quick replies, grouped: the defaults the table starts with on first use.
DEFAULT_CANNED_REPLIES = [
    ("问候", "您好，我是客服，很高兴为您服务，请问有什么可以帮您？"),
    ("订单", "请您提供一下订单号，我马上为您查询。"),
    ("处理进度", "已为您登记，处理结果会在24小时内通知您。"),
    ("致歉", "非常抱歉给您带来不便，我们会尽快为您处理。"),
    ("结束", "感谢您的耐心等待，还有其他可以帮您的吗？"),
]

# Staff accounts (bot/console/staff_views.py); the rules' own errors are in models/staff.py.
STAFF_ERRORS = {
    "username": "用户名需为3-32位小写字母、数字、下划线、点或短横线。",
    "role": "请选择角色：客服、营销或管理员。",
    "exists": "该用户名已存在。",
    "missing": "没有这个账号。",
    "last_admin": "至少需要保留一个启用的管理员账号。",
    "password": "密码至少需要10个字符。",
}
