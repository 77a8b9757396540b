"""Step one: the member's text in one canonical form, so the later steps see fewer variants.

NFKC (full-width letters, digits and punctuation fold to ASCII), case, traditional characters to
simplified (OpenCC's ``t2s`` tables, shipped with the package), emoji and other symbols dropped,
repeated punctuation collapsed, filler particles (呢/呀/吗/啊/哈…) removed, and a greeting in
front of a real request (「你好，我想查积分」) taken off.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import opencc

# Filler particles at the end of a sentence carry no request. 吧 and 了 stay: 「算了」「不要了」
# and 「好吧」 mean something; inside a sentence (什么, 吗啡) nothing is touched.
_FILLERS = re.compile(r"(?<=\w)[呢呀吗嘛啊哈呐哇噢喔哦嗯]+(?=[^\w]|$)")
# A greeting at the start, followed by more text (the request). 在吗 / 在不在 are greetings, and
# so is a greeting with whom it addresses (「你好客服」「老板好」「你好机器人」): the member is
# saying hello, not asking for a person. An addressee counts only where a separator or the end
# follows (「你好客服电话多少」 keeps its 客服). English words only as whole words (not history).
_SEPARATORS = r"[\s,，.。!！~、:：?]"
_PARTICLES = "呢呀吗嘛啊哈呐哇噢喔哦嗯"
_ADDRESSEE = r"(?:客服|小助手|小助理|助手|小编|亲亲|亲|老板|美女|帅哥|机器人)"
_END = rf"(?={_SEPARATORS}|[{_PARTICLES}]|$)"
_GREETING = re.compile(
    r"^(?:(?:"
    r"(?:(?:hi|hello|hey)(?![a-z])|哈喽|哈罗|嗨|您好|你好|早上好|上午好|中午好|下午好|晚上好"
    rf"|早安|晚安)(?:{_ADDRESSEE}{_END})?"
    rf"|{_ADDRESSEE}(?:你好|您好|好){_END}"
    r"|亲爱的|亲|在吗|在不在|请问|麻烦问一下|麻烦|打扰一下|小助手"
    rf")(?:{_SEPARATORS}|[{_PARTICLES}])*)+"
)
# What may follow a greeting without being a request: punctuation and particles (「在吗？？」
# 「你好哦」 are greetings, not 「?」 asking for help).
_NOTHING_MORE = re.compile(rf"[\W_{_PARTICLES}]*")
_PUNCTUATION_RUN = re.compile(r"([^\w\s])\1+")
_SPACES = re.compile(r"\s+")
# Emoji that say something on their own (「👍」 is an answer); other symbols are dropped.
_EMOJI_WORDS = str.maketrans({"👍": "好", "👌": "好的", "🙏": "谢谢", "👋": "你好", "🎂": "生日"})
# Unicode categories dropped: symbols (emoji, dingbats), marks and format characters (zero-width
# joiners, variation selectors, bidi controls).
_DROPPED = frozenset({"So", "Sk", "Cf", "Cs", "Co", "Cn", "Mn", "Me", "Cc"})


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@dataclass(frozen=True, slots=True)
class Normalised:
    """The text as the later steps read it; ``greeting``: a greeting was taken off the front,
    or the text is only a greeting."""

    text: str
    greeting: bool = False


def fold(text: str) -> str:
    """NFKC, case, simplified characters, no symbols, single punctuation, single spaces."""
    folded = unicodedata.normalize("NFKC", text.translate(_EMOJI_WORDS)).casefold()
    folded = _converter().convert(folded)
    kept = "".join(
        " " if ch.isspace() else ch for ch in folded if unicodedata.category(ch) not in _DROPPED
    )
    kept = _PUNCTUATION_RUN.sub(r"\1", kept)
    return _SPACES.sub(" ", kept).strip()


# Members send the same few words (积分, 等级, the menu's) over and over, and a message is
# normalised more than once (understanding, then the open question's check).
@lru_cache(maxsize=4096)
def normalise(text: str) -> Normalised:
    """The canonical form of a member's message (see the module's docstring)."""
    folded = fold(text)
    greeting = False
    match = _GREETING.match(folded)
    if match and not _NOTHING_MORE.fullmatch(folded, match.end()):
        folded, greeting = folded[match.end() :], True
    elif match:
        return Normalised(folded.strip(" ,，.。!！~、:：?"), greeting=True)
    stripped = _FILLERS.sub("", folded)
    # Punctuation at either end says nothing, unless it is all there is ("?" asks for help).
    stripped = stripped.strip(" \t。.!！~～、，,?？:：;；…")
    return Normalised(stripped or folded.strip(), greeting)


def is_greeting(text: str) -> bool:
    """Whether a normalised ``text`` is a greeting and nothing more (「在吗」「你好客服」)."""
    match = _GREETING.match(text)
    return match is not None and _NOTHING_MORE.fullmatch(text, match.end()) is not None
