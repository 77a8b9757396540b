"""The ``[chat]`` settings: words members type and menu keys, mapped to intents."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatConfig(_Section):
    """Words members type, mapped to what they ask for."""

    keywords: dict[str, list[str]] = {
        "help": ["帮助", "菜单", "help", "?"],
        "points": ["积分"],
        "tier": ["等级", "会员"],
        "benefits": ["权益"],
        "coupons": ["我的券", "优惠券", "券"],
        "recap": ["年度回顾", "年度报告"],
        "referral": ["推荐", "邀请"],
        "my_referrals": ["我的推荐"],
        "human": ["人工", "客服"],
    }
    menu_keys: dict[str, str] = {
        "MENU_HELP": "help",
        "MENU_POINTS": "points",
        "MENU_TIER": "tier",
        "MENU_BENEFITS": "benefits",
        "MENU_COUPONS": "coupons",
        "MENU_REFERRAL": "referral",
        "MENU_MY_REFERRALS": "my_referrals",
        "MENU_HUMAN": "human",
    }
