"""The ``[chat]`` settings: words members type and menu keys mapped to intents, the brand's
FAQ answers, and how long what the bot did not understand is kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaqEntry(_Section):
    """One brand FAQ: phrases that ask it (looked for inside a message, and learnt from) and
    the answer members get."""

    patterns: list[str] = Field(min_length=1)
    answer: str = Field(min_length=1, max_length=1000)


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
        "redeem": ["积分兑换"],
        "birthday": ["生日"],
        "opt_out": ["退订", "TD"],
        "opt_in": ["恢复推送"],
    }
    menu_keys: dict[str, str] = {
        "MENU_HELP": "help",
        "MENU_POINTS": "points",
        "MENU_TIER": "tier",
        "MENU_BENEFITS": "benefits",
        "MENU_COUPONS": "coupons",
        "MENU_REWARDS": "redeem",
        "MENU_REFERRAL": "referral",
        "MENU_MY_REFERRALS": "my_referrals",
        "MENU_HUMAN": "human",
    }
    # The brand's FAQ answers by key (opening hours, delivery, returns…).
    faq: dict[str, FaqEntry] = {}
    # Members' own words in what the bot did not understand are deleted after this many days.
    miss_retention_days: int = Field(default=30, ge=1, le=365)
    # How often each process checks whether staff taught the bot a phrasing (seconds).
    taught_refresh_seconds: float = Field(default=10.0, gt=0, le=60)
