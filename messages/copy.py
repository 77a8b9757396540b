"""Every sentence a member reads, in Simplified Chinese. Code elsewhere only picks and fills."""

from __future__ import annotations

from collections.abc import Sequence

HELP_TITLE = "您好，我是会员小助手。回复下列关键词即可："
HELP_COMING_SOON = "您好，我是会员小助手。更多会员服务即将上线，敬请期待！"
HELP_LINE = "【{keyword}】{what}"
HELP_FOOTER = "随时回复【{keyword}】查看本菜单。"

# What each capability does, shown in the help menu next to its first keyword.
CAPABILITIES = {
    "help": "查看本菜单",
    "points": "查询积分余额与即将过期的积分",
    "tier": "查看会员等级与升级进度",
    "benefits": "查看当前等级的会员权益",
    "referral": "获取专属推荐链接与二维码",
    "human": "转接人工客服",
}

WELCOME = "欢迎关注！感谢您成为我们的会员 🎉"
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
