"""Questions the bot asked in chat, so the member's short answer means something.

Three kinds, one Redis key per member (``ASKED_KEY``, ``ASKED_TTL`` seconds), the latest
question replacing the one before:

- ``choices``: the numbered intents the fallback offered; 「1」「２」「三」 picks one.
- ``birthday``: the bot asked for the birthday; a date (「3月5日」「0305」) answers.
- ``birthday_confirm``: the bot repeated the date back; 「是」 records it, 「不是」 drops it.
- ``rewards``: the numbered catalogue shown (item ids in order); 「2」 picks the second.
- ``reward_confirm``: the bot asked to confirm a redemption (item, price, the token that is
  its idempotency key); 「确认」 redeems, 「取消」 drops it.

The webhook's gate reads the key with the message's own Redis work (``Inbound.asked_seen``);
it is interpreted only when a message looks like such an answer (a digit, a date, yes or no).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from handlers.inbound import Inbound
from handlers.understanding.normalise import normalise
from handlers.understanding.pipeline import Understanding
from handlers.understanding.slots import find_date
from messages import chat_copy

ASKED_KEY = "asked:{openid}"
ASKED_TTL = 600
CHOICES, BIRTHDAY, BIRTHDAY_CONFIRM = "choices", "birthday", "birthday_confirm"
REWARDS, REWARD_CONFIRM = "rewards", "reward_confirm"
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6}
_NO_WORDS = ("不是", "不对", "错了", "不", "否", "no", "n", "取消", "不换了", "算了")


def choice_number(text: str) -> int | None:
    """The number a one-character answer stands for (「1」「１」「①」「三」), or None."""
    folded = unicodedata.normalize("NFKC", text).strip().rstrip("。.、,，")
    if len(folded) != 1:
        return None
    if folded.isdigit():
        return int(folded) or None
    return _NUMERALS.get(folded)


async def ask(msg: Inbound, kind: str, **fields: Any) -> None:
    """Remember the question just asked (it replaces any earlier one)."""
    key = ASKED_KEY.format(openid=msg.openid)
    await msg.svc.redis.set(key, json.dumps({"kind": kind, **fields}), ex=ASKED_TTL)
    msg.asked_seen = None  # what the gate read is old now


async def offer(msg: Inbound, intents: Sequence[str]) -> None:
    """Remember the numbered choices offered to the member, in order."""
    await ask(msg, CHOICES, intents=list(intents))


async def asked(msg: Inbound) -> dict[str, Any] | None:
    """The open question, if any (as ``ask`` stored it): as the gate read it with the
    message's Redis work, else read now."""
    raw = msg.asked_seen
    if raw is None:
        raw = await msg.svc.redis.get(ASKED_KEY.format(openid=msg.openid))
    return json.loads(raw) if raw else None


async def forget(msg: Inbound) -> None:
    """The question is answered."""
    await msg.svc.redis.delete(ASKED_KEY.format(openid=msg.openid))
    msg.asked_seen = None


@lru_cache(maxsize=4096)  # asked of every text message, mostly the same few words
def _looks_like_an_answer(text: str) -> bool:
    normal = normalise(text).text
    return (
        choice_number(text) is not None
        or normal in chat_copy.YES_WORDS
        or normal in _NO_WORDS
        or (len(normal) <= 16 and find_date(normal) is not None)
    )


async def answer(msg: Inbound) -> None:
    """When ``msg`` answers the bot's open question, set the intent (and slots) it means."""
    if not _looks_like_an_answer(msg.text):
        return
    question = await asked(msg)
    if question is None:
        return
    normal = normalise(msg.text).text
    slots: dict[str, str] = {}
    intent = None
    if question["kind"] == CHOICES and (number := choice_number(msg.text)) is not None:
        offered = question["intents"]
        intent = offered[number - 1] if 1 <= number <= len(offered) else None
        await forget(msg)
    elif question["kind"] == BIRTHDAY and (day := find_date(normal)) is not None:
        intent = "birthday"
        slots["date"] = day.day.isoformat() if day.day else "invalid"
        if day.year is not None:
            slots["year_given"] = "1"
    elif question["kind"] == BIRTHDAY_CONFIRM and normal in (*chat_copy.YES_WORDS, *_NO_WORDS):
        intent = "birthday_confirm"
        slots = {
            "date": question["date"],
            "answer": "yes" if normal in chat_copy.YES_WORDS else "no",
        }
    elif question["kind"] == REWARDS and (number := choice_number(msg.text)) is not None:
        intent, slots = "reward_pick", {"number": str(number)}
    elif question["kind"] == REWARD_CONFIRM and normal in (*chat_copy.YES_WORDS, *_NO_WORDS):
        intent = "reward_confirm"
        slots = {
            "item": str(question["item"]),
            "points": str(question["points"]),
            "token": question["token"],
            "answer": "yes" if normal in chat_copy.YES_WORDS else "no",
        }
    if intent is not None:
        msg.intent = intent
        msg.understood = Understanding(normal, intent, 1.0, slots, source="answer")
