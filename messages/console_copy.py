"""The console's answers to staff actions, in Simplified Chinese (canned replies: the
database, seeded from messages/cs_tools_copy.py).

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

# The service-reply template's fields (keys named in [delivery.templates.service_reply]).
TEMPLATE_TITLE = "客服回复"
TEMPLATE_NOTE = "如有疑问，回复“人工”联系客服。"


def template_fields(text: str) -> dict[str, str]:
    """The fields a service-reply template message can draw on."""
    return {"title": TEMPLATE_TITLE, "content": text, "note": TEMPLATE_NOTE}


# The programme's figures (models/figures.py), as the dashboard and the monthly report name them.
FIGURE_NAMES = {
    "repurchase_12m": "年度复购率",
    "first_repeat_90d": "首单复购率（90天）",
    "churn": "客户流失率",
    "aov": "客单价",
    "ltv_12m": "人均12个月净消费",
    "high_value_share": "高价值会员占比",
    "active_members": "活跃会员（当月消费）",
    "follows": "新增关注",
    "bindings": "会员绑定",
    "unfollows": "取消关注",
    "points_earned": "发放积分",
    "points_redeemed": "兑换积分",
    "points_expired": "过期积分",
    "benefit_use": "权益使用率（券核销率）",
    "participation": "计划参与率",
    "winback": "流失风险挽回率",
    "wakeup": "沉睡唤醒率",
    "referral_rate": "推荐率（新关注中经推荐）",
    "csat": "客户满意度",
    "nps": "NPS 净推荐值",
    "pickup_in_target": "及时接入率（1小时内）",
    "resolved_24h": "24小时解决率",
    "cases_in_due": "工单按时解决率",
    "callback_connect": "回访接通率",
    "follow_up_completion": "跟进按时完成率",
}
# Why the outbox skipped a push (the delivery's reason code), as the campaign page shows it.
SKIP_REASONS = {
    "frequency_cap": "频次上限",
    "mass_allowance": "群发额度用完",
    "mass_alone": "群发人数不足",
    "no_channel": "无可用渠道",
    "opted_out": "已退订",
    "unanswered": "未回应",
    "unsubscribed": "已取关",
    "clientmsgid_exists": "已发送过",
    "wechat_error": "微信拒绝",
}

SEGMENT_NAMES = {
    "core": "核心忠诚",
    "important": "重要价值",
    "potential": "潜力培养",
    "at_risk": "流失风险",
    "dormant": "沉睡",
    "other": "其他",
    "none": "未分群",
}
# Push purposes (models/deliveries.py rows), as the dashboard lists them.
PURPOSE_NAMES = {
    "birthday": "生日礼遇",
    "points_expiring": "积分到期提醒",
    "coupon_expiring": "优惠券到期提醒",
    "holiday": "节日祝福",
    "winback": "唤醒挽回",
    "tier_keeping": "保级提醒",
    "tier_upgraded": "升级祝贺",
    "referral_rewarded": "推荐奖励",
    "referral_star": "推荐之星",
    "referral_qr": "推荐二维码",
    "campaign": "营销活动",
    "annual_recap": "年度回顾",
    "csat_order": "订单满意度调研",
    "csat_conversation": "服务满意度调研",
    "nps_sample": "NPS 调研",
    "service_reply": "客服回复",
    "handoff_ended": "人工服务结束",
    "benefit_granted": "礼遇到账",
    "order_credited": "积分到账通知",
    "monthly_tier": "月度会员礼遇",
    "anniversary": "会员纪念日",
    "behaviour_points": "行为积分",
}
# 礼遇规则 (models/benefits/), as the console lists them; a dated boost is 积分加倍：<its name>.
BENEFIT_RULE_NAMES = {
    "welcome": "新人礼（关注或绑定）",
    "repeat_order": "复购赠礼",
    "order_notice": "积分到账通知",
    "tier_upgrade": "升级礼",
    "growth": "年度成长奖励（连升多级）",
    "monthly_tier": "月度会员礼遇",
    "birthday": "生日礼（按等级）",
    "segment_entered": "分群礼遇（流失风险／沉睡）",
    "anniversary": "会员纪念日礼",
    "profile": "完善资料奖励",
    "survey": "参与调研奖励",
}
BOOST_RULE_NAME = "积分加倍：{name}"
BENEFIT_SAVED = "已保存“{rule}”的设置。"
BENEFIT_BAD = "无法保存“{rule}”：{error}"
# Breakdowns of a figure beyond tier and segment.
CONTACTED = "已触达"
HOLDOUT = "对照组"
NO_TARGET = "—"
MET = "达标"
MISSED = "未达标"
BAD_MONTH = "无法查看“{month}”：请选择已有的月份（如 2026-11）。"
MONTH_NOT_ENDED = "“{month}”尚未结束，月度报告只能下载已结束的月份。"
# Campaign rewards (the new-campaign form).
UNKNOWN_COUPON_KIND = "请选择已配置的券种作为活动奖励。"
BAD_REWARD_POINTS = "奖励积分需为1到{most}之间的整数。"
# Purchase-based audiences (the new-campaign form).
BAD_PURCHASE_MONTHS = "消费时间范围需为1到{most}个月。"
NOT_A_WHOLE_NUMBER = "{what}需为不小于0的整数。"
# The recurrence picker (the new-campaign form).
BAD_REPEAT = "请选择重复方式：每天、每周、每月，或高级设置中的 crontab。"
BAD_REPEAT_TIME = "请选择发送时刻（如 10:00）。"
BAD_REPEAT_WEEKDAY = "请选择每周的哪一天发送。"
BAD_REPEAT_DAY = "每月发送日需为1到{last}日（并非每个月都有29-31日）。"
