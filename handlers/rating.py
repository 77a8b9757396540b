"""Answers to a rating question the member has open (the question came as a push).

One digit answers it ("5", "5分", "５", "五"); words after the score are kept as a comment. A
configured second question follows (a comment, or the NPS question). Anything else while the
question is open gets one reminder; the next miss lets the question lapse and the message is
handled as usual. A keyword the bot knows (积分, 人工…) is answered as usual and leaves the
question open. A score sent just after the answer (a double tap) is thanked and changes nothing.
Low scores open a follow-up and queue the conversation for customer service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from handlers.handoff import hand_over
from handlers.inbound import Inbound
from handlers.rating_answers import parse_score
from handlers.router import Declined, Filter, Router
from messages import rating_copy as copy
from messages.replies import Reply, TextReply
from models.base import utcnow
from models.ratings import CSAT, NPS, SCALES, OpenQuestion, add_comment, record_rating

router = Router("rating")
COMMENT = "comment"


@dataclass(frozen=True)
class _Answering(Filter):
    def __call__(self, msg: Inbound) -> bool:
        return msg.kind == "text" and msg.question is not None and msg.intent is None


@router.on(_Answering())
async def answer(msg: Inbound) -> Reply:
    """Take the answer to the open question (see the module's docstring)."""
    question = msg.question
    if question is None or msg.member_id is None:
        raise Declined
    if question.kind == COMMENT:
        return await _comment(msg, question)
    low, high = SCALES[question.kind]
    parsed = parse_score(msg.text, low, high)
    questions = msg.svc.questions
    if question.answered:
        if parsed is None:
            raise Declined
        return TextReply(copy.THANKS)
    if parsed is None:
        if not question.reprompted and await questions.reprompted(msg.openid, question):
            return TextReply(copy.REPROMPT[question.kind])
        await questions.take(msg.openid, question)
        raise Declined
    if not await questions.answered(msg.openid, question):
        return TextReply(copy.THANKS)  # another message answered it a moment ago
    score, comment = parsed
    rules = msg.svc.rules
    rating, follow_up = await record_rating(
        msg.db, rules, msg.member_id, question, score, comment, utcnow()
    )
    await msg.db.commit()
    if follow_up is not None and msg.svc.handoff_mode == "console":
        # A person follows up at once: the conversation is queued for customer service.
        return await hand_over(msg, "low_rating", follow_up.id, lead=copy.THANKS_LOW)
    lines = [copy.THANKS_LOW if follow_up is not None else copy.THANKS]
    follow = rules.ratings.csat_follow_up if question.kind == CSAT else ""
    if rating is not None and follow == COMMENT and not comment:
        await questions.open(msg.openid, _next(question, COMMENT, rating.id))
        lines.append(copy.ASK_COMMENT)
    elif rating is not None and follow == NPS:
        await questions.open(msg.openid, _next(question, NPS, None))
        lines.append(copy.NPS)
    return TextReply("\n".join(lines))


async def _comment(msg: Inbound, question: OpenQuestion) -> TextReply:
    # A bare score is not a comment: a double tap of the score that opened this question (only
    # CSAT asks for one). Thanked; the comment stays open.
    if (scored := parse_score(msg.text, *SCALES[CSAT])) is not None and not scored[1]:
        return TextReply(copy.THANKS)
    if not await msg.svc.questions.take(msg.openid, question):
        return TextReply(copy.COMMENT_THANKS)
    text = msg.text.strip()
    if text in copy.SKIP_WORDS or question.rating_id is None:
        return TextReply(copy.THANKS)
    await add_comment(msg.db, question.rating_id, text)
    return TextReply(copy.COMMENT_THANKS)


def _next(question: OpenQuestion, kind: str, rating_id: int | None) -> OpenQuestion:
    return OpenQuestion(
        id=f"{question.id}:{kind}",
        kind=kind,
        context=question.context,
        ref=question.ref,
        asked_at=time.time(),
        rating_id=rating_id,
    )
