"""Customer service's priority lane and cases, as staff read them in the console (Simplified
Chinese). Codes stay in English in the database; their labels live here."""

from __future__ import annotations

# Why a queued conversation is ahead of others waiting longer: the member's tier's lane.
PRIORITY_BADGE = "{tier}优先"

# Case categories: code → label, in the order the console offers them.
CASE_CATEGORIES = {
    "returns": "退换货",
    "quality": "质量",
    "logistics": "物流",
    "points": "积分",
    "other": "其他",
}
CASE_STATUSES = {"open": "处理中", "closed": "已结案"}
# What a case's history shows for each of its entries.
CASE_ENTRY_KINDS = {
    "opened": "建立工单",
    "message": "客服消息",
    "template": "模板消息",
    "updated": "修改",
    "taken": "接手",
    "closed": "结案",
    "reopened": "重新打开",
}

# Answers to staff actions on cases.
CASE_EXISTS = "该会话已建立工单。"
CASE_NOT_FOUND = "没有这个工单。"
CASE_CLOSED = "工单已结案，请先重新打开。"
CASE_OPEN_ALREADY = "工单仍在处理中。"
CASE_BAD_CATEGORY = "请选择工单类别（退换货、质量、物流、积分、其他）。"
CASE_BAD_DUE = "截止时间格式不对，或早于现在。"
CASE_NOTES_LENGTH = "备注最多2000字。"
CASE_OUTCOME_LENGTH = "请填写处理结果（1-500字）。"
CASE_REASON_LENGTH = "请填写重新打开的原因（1-500字）。"
CASE_BAD_FILTER = "筛选条件不对：状态可选 open、overdue、closed、all，类别见下拉列表。"
CASE_NO_WAY = (
    "会员的48小时回复窗口已关闭（或本轮次数已用完），且尚未配置客服回复模板"
    "（[delivery.templates.service_reply]），暂时无法联系会员。"
)
CASE_TOO_LONG_FOR_TEMPLATE = (
    "会员的48小时回复窗口已关闭，只能以模板消息联系会员，模板消息内容需为1-200字。"
)
SERVICE_BAD_DAYS = "统计天数需为1-366之间的整数。"
