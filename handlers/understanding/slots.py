"""Slots: what an intent needs beyond its name, read from the normalised text.

A birthday (「3月5日」「3-5」「1990年3月5日」「0305」「十二月二十五号」), a tier the member names
(「钻石会员有什么权益」), and whether the member is refusing rather than asking (「不用转人工」).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# A birthday given without a year is stored in this year: a leap year (29 February is a valid
# birthday) before any living member's birth, so it never reads as a real age.
NO_YEAR = 1904

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CN_DIGITS |= {"五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十]{1,3}")
_DATES = (
    # 1990年3月5日, 1990-03-05, 1990.3.5, 1990/3/5
    re.compile(r"(?P<y>(?:19|20)\d{2})\s*[年./-]\s*(?P<m>\d{1,2})\s*[月./-]\s*(?P<d>\d{1,2})"),
    # 19900305
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})(?!\d)"),
    # 3月5日, 3月5号, 3月5
    re.compile(r"(?<!\d)(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})(?!\d)"),
    # 3-5, 3.5, 3/5, 03-05
    re.compile(r"(?<![\d.])(?P<m>\d{1,2})\s*[./-]\s*(?P<d>\d{1,2})(?![\d.])"),
    # 0305
    re.compile(r"(?<!\d)(?P<m>[01]\d)(?P<d>[0-3]\d)(?!\d)"),
)
# Words that turn a request into a refusal when they come before it.
_REFUSAL_CUES = ("不用", "不要", "不需要", "别", "无需", "不必", "不想", "甭")
_HUMAN_WORDS = ("人工", "客服", "真人", "转", "找人")
_REFUSAL_START = re.compile(r"^(?:不用|不需要|无需|不必|算了|没事|甭)")


@dataclass(frozen=True, slots=True)
class DateSlot:
    """A date a member gave: ``day`` when it is a real date, else ``None`` (「2月30日」)."""

    day: date | None
    month: int
    day_of_month: int
    year: int | None


def _cn_to_int(text: str) -> int | None:
    """「十二」→12, 「二十五」→25, 「五」→5."""
    if "十" not in text:
        return _CN_DIGITS.get(text) if len(text) == 1 else None
    tens, _, units = text.partition("十")
    high = _CN_DIGITS.get(tens, 0) if tens else 1
    low = _CN_DIGITS.get(units, 0) if units else 0
    return high * 10 + low


def _arabic(text: str) -> str:
    """Chinese numerals of up to 99 as digits (「十二月二十五号」→「12月25号」)."""
    return _CN_NUMBER.sub(lambda m: str(_cn_to_int(m.group()) or m.group()), text)


def find_date(text: str) -> DateSlot | None:
    """The first date-like part of ``text`` (a calendar check included), or None."""
    text = _arabic(text)
    for pattern in _DATES:
        match = pattern.search(text)
        if match is None:
            continue
        month, day_of_month = int(match["m"]), int(match["d"])
        year = int(match["y"]) if "y" in pattern.groupindex else None
        try:
            day = date(year or NO_YEAR, month, day_of_month)
        except ValueError:
            day = None
        return DateSlot(day, month, day_of_month, year)
    return None


def refuses_a_person(text: str) -> bool:
    """「不用转人工」「别找客服了」: a refusal cue before a word asking for a person."""
    for cue in _REFUSAL_CUES:
        at = text.find(cue)
        if at >= 0 and any(text.find(word, at + len(cue)) >= 0 for word in _HUMAN_WORDS):
            return True
    return False


def starts_with_refusal(text: str) -> bool:
    """「不用查了」「算了不要了」: the message opens by declining."""
    return _REFUSAL_START.match(text) is not None


def named_tier(text: str, aliases: dict[str, str]) -> str | None:
    """The tier code the text names (longest alias first: 「钻石会员」 before 「钻石」)."""
    for alias in sorted(aliases, key=len, reverse=True):
        if alias in text:
            return aliases[alias]
    return None


# 「兑换 2」「兑换第三个」「我要兑换2号」「换1」: the number of an item in the 积分兑换 list.
_REWARD_PICK = re.compile(
    r"^(?:我要|我想|请|帮我)?(?:兑换|换)\s*第?\s*(?P<n>\d{1,2})\s*(?:号|个|件)?(?:礼品|商品)?$"
)


def reward_number(text: str) -> int | None:
    """The item number in a 「兑换 N」 message (Chinese numerals too), or None."""
    found = _REWARD_PICK.match(_arabic(text))
    return int(found.group("n")) if found else None
