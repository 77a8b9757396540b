"""The domain lexicon: a few high-precision patterns, tried before the classifier.

Two kinds of message are better read by a pattern than by n-grams:

- short formulaic ones, where a whole message is a greeting, a thanks or a refusal
  (「在吗？？」「好的谢谢」「那不用了哈」): their n-grams are few and shared with requests
  (「好」 is in 「好处」, 「不要」 in 「不要推送」), so the classifier is least sure exactly where
  the answer is most certain. These patterns match only the whole (normalised) message;
- distinctions the n-grams blur: 「我推荐了几个」「我邀请的人」 ask how one's referrals are doing
  (``my_referrals``), where 推荐/邀请 alone mostly ask for the link (``referral``); 「取消退订」
  asks to receive messages again, though 取消 and 退订 each mean stopping them; 「不再接收推送」
  「不要给我发广告」 refuse the messages (``opt_out``), not what was just offered (``decline``).

Every pattern is checked by cross-validation on the training part (``bench/understanding.py
--cv``): a pattern that takes a line from its right intent there does not stay. The brand's
keywords and staff's taught phrasings still come first (``pipeline``).
"""

from __future__ import annotations

import re

from handlers.understanding.normalise import is_greeting

# Parts of a thanks, an acknowledgement, praise or a goodbye; a message made only of them
# (with particles, whom it addresses, and separators) is a ``thanks``.
_THANKS_WORD = (
    r"(?:谢谢|谢了|谢啦|多谢|感谢|感恩|感激不尽|万分感谢|非常感谢|辛苦|thank you|thank u|thanks"
    r"|thx|tks|ty|3q|xiexie|xie xie|好的|好滴|好哒|好嘞|好咧|好勒|得嘞|好吧|好|ok|okay|okk"
    r"|收到|明白|懂|了解|知道|清楚|晓得|妥|没问题|没毛病|6{3,}|牛|棒|赞|厉害|给力|不错|nb"
    r"|拜拜|再见|bye|byebye|88|886|回头见|下次见)"
)
_TAIL = r"(?:了|啦|的|哈|哒|呢|呀|啊|哦|嘛|滴|你|您|你们|亲|小助手|客服|小编|一下|[!,。~\s])*"
_THANKS = re.compile(rf"(?:(?:嗯+|哦+|噢+|非常|太|真)?{_THANKS_WORD}{_TAIL})+")

# A refusal of what was offered, alone or with thanks: 「不用了」「那算了吧」「不要了谢谢」.
_DECLINE = re.compile(
    r"(?:那|那就|那还是|哦+|噢+|嗯+|好的?|行|ok)?[,\s]*"
    r"(?:不用|不要|不需要|不必|不了|算了?|没事|没关系|无需|免了|别了|暂时不用|暂时不需要|先不用"
    r"|先不要|现在不用|现在不需要|不麻烦|不用麻烦|先这样吧?|就这样吧|下次再说|以后再说|改天再说"
    r"|回头再说|never ?mind|no thanks|no thank you|no need|not now|nope|no|不)"
    r"(?:了|啦|吧|哈|的|呢|啊|哦|亲|[!,。~\s])*"
    r"(?:(?:谢谢|谢啦|谢了|感谢|多谢|thanks)(?:你|您|啦|了|哈|亲)*)?"
)

# How one's own referrals are doing, not how to refer.
_MY_REFERRALS = re.compile(
    r"我的?(?:推荐|邀请|拉)(?:了|过|成功)"
    r"|(?:推荐|邀请|拉)了(?:几|多少|谁|哪)"
    r"|我(?:推荐|邀请|拉)的(?:人|朋友|好友|同事|新人|名单|家人)"
    r"|(?:推荐|邀请)(?:好友|朋友|的人)?的?(?:记录|明细|统计|人数|数量|进度|成果|战绩|名单|排行"
    r"|排名|情况|结果|成绩)"
)

# Taking a refusal back; reading 取消 or 退订 alone would stop the messages instead. Wanting
# messages (想收, 继续推送) counts only when no 不/别 comes right before it (不想收 is a refusal).
_OPT_IN = re.compile(
    r"(?:取消|撤销|撤回)退订|不(?:想|要)?退订|退订错|^(?:re)?subscribe"
    r"|(?<![不别])(?:想|要|可以|继续|重新|恢复)(?:再|给我)?(?:收到?|接收|推送|订阅)"
)
# Refusing the messages themselves: a negation, then receiving or sending them (「不再接收推送」
# 「不要给我发广告」), or cancelling a subscription. Without this, 不/不用 reads as a plain decline.
_OPT_OUT = re.compile(
    r"(?:不|别|不再|不想|不要|不用|不想再|不要再|别再)(?:再)?(?:给我)?(?:收到?|接收|推送|推|发)"
    r"(?:推送|消息|广告|活动|通知|短信|营销|了|$)"
    r"|取消(?:订阅|推送|通知|营销|活动推送|所有通知)|^(?:unsubscribe|unsub|opt out|opt me out)"
)

# Formulas are short; longer messages are not tried against them (which also bounds the work
# their nested repetitions can cost).
_FORMULA_LENGTH = 24
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("thanks", _THANKS),
    ("decline", _DECLINE),
)
_SEARCHED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("opt_in", _OPT_IN),
    ("opt_out", _OPT_OUT),
    ("my_referrals", _MY_REFERRALS),
)


def lexicon_intent(text: str) -> str | None:
    """The intent the domain lexicon reads in a normalised ``text``, or None."""
    if len(text) > _FORMULA_LENGTH:
        return next((name for name, pattern in _SEARCHED if pattern.search(text)), None)
    if is_greeting(text):
        return "greeting"
    for intent, pattern in _PATTERNS:
        if pattern.fullmatch(text):
            return intent
    for intent, pattern in _SEARCHED:
        if pattern.search(text):
            return intent
    return None
