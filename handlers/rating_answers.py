"""Reading a score out of what a member typed: "5", "5分", full-width "５", "五", "十分满意"…

A score is a number (ASCII or full-width digits, or one Chinese numeral 零-十) at the start of
the message, alone or followed by 分/星 or a separator, and inside the question's scale. What
follows it is the member's comment. "5月3号", "4.5" or "50" is not an answer.
"""

from __future__ import annotations

import re
import unicodedata

_NUMERALS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_NUMERALS |= {"六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_SEPARATORS = r"\s,，。.!！:：、;；~～-"
_ANSWER = re.compile(
    rf"^\s*(?P<number>\d{{1,2}}|[{''.join(_NUMERALS)}])"
    rf"(?:[分星][{_SEPARATORS}]*|[{_SEPARATORS}]+|$)(?P<comment>.*)$",
    re.DOTALL,
)
_DECIMAL = re.compile(r"^\s*\d+\.\d")


def parse_score(text: str, low: int, high: int) -> tuple[int, str] | None:
    """(score, comment) when ``text`` answers a question scored ``low``-``high``, else None."""
    # NFKC folds full-width digits and punctuation to ASCII.
    folded = unicodedata.normalize("NFKC", text)
    match = None if _DECIMAL.match(folded) else _ANSWER.match(folded)
    if match is None:
        return None
    number = match["number"]
    score = int(number) if number.isdigit() else _NUMERALS[number]
    if not low <= score <= high:
        return None
    return score, match["comment"].strip()
