"""Asking back: the choices a clarification offered, kept so the member's digit picks one.

The fallback (handlers/fallback.py) offers the likeliest intents as numbered choices; the
dispatcher turns a reply of 「1」, 「２」 or 「三」 into the chosen intent. The choices live
for ``CHOICES_TTL`` seconds in Redis, keyed by openid.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from handlers.inbound import Inbound

CHOICES_KEY = "clarify:choices:{openid}"
CHOICES_TTL = 600
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6}


def choice_number(text: str) -> int | None:
    """The number a one-character answer stands for (「1」「１」「①」「三」), or None."""
    folded = unicodedata.normalize("NFKC", text).strip().rstrip("。.、,，")
    if len(folded) != 1:
        return None
    if folded.isdigit():
        return int(folded) or None
    return _NUMERALS.get(folded)


async def offer(msg: Inbound, intents: Sequence[str]) -> None:
    """Remember the choices offered to the member, in order."""
    key = CHOICES_KEY.format(openid=msg.openid)
    await msg.svc.redis.set(key, ",".join(intents), ex=CHOICES_TTL)


async def chosen(msg: Inbound, number: int) -> str | None:
    """The intent the member picked by number from the last choices offered, if any; the
    choices are used up."""
    key = CHOICES_KEY.format(openid=msg.openid)
    raw = await msg.svc.redis.getdel(key)
    if raw is None:
        return None
    offered = raw.decode().split(",")
    return offered[number - 1] if 1 <= number <= len(offered) else None
