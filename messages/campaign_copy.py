"""What a campaign push adds to the marketer's text when the campaign carries a reward: the
member is told what was put in their account, so the push promises exactly what is issued."""

from __future__ import annotations

from typing import Any


def reward_line(terms: dict[str, Any]) -> str:
    """The line appended to a rewarded push (``terms``: models/campaign_rewards.reward_terms)."""
    if terms.get("points"):
        return f"🎁 {terms['points']}积分已存入您的账户，回复“积分”查看。"
    return f"🎁 {terms['name']}已放入您的券包（{terms['valid_days']}天内有效），回复“我的券”查看。"


def with_reward(text: str, terms: dict[str, Any] | None) -> str:
    """The push's text, with the reward's line when there is one."""
    return f"{text}\n{reward_line(terms)}" if terms else text
