"""Ratings in chat: the question as a push, every answer form, reminders, low scores, the
monthly NPS sample, and the satisfaction report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from bot.push.outbox import DeliveryWorker
from bot.wechat.questions import ANSWERED_SECONDS
from bot.wiring import questions_store
from handlers.rating_answers import parse_score
from models.conversations import Conversation
from models.deliveries import SURVEY, Delivery
from models.members import Member
from models.ratings import FollowUp, OpenQuestion, Rating
from scheduler.jobs import JOBS, JobContext
from scheduler.rating_questions import plan_after_conversation, question_opener
from tests.bot.api.test_api import call, follower, order
from tests.bot.push.test_delivery import _worker as delivery_worker
from tests.helpers import PLAIN, push
from tests.wechat_standin import WeChatStandIn

OPENID = "o_rate_member01"


@pytest.mark.parametrize(
    ("text", "low", "high", "expected"),
    [
        ("5", 1, 5, (5, "")),
        ("5分", 1, 5, (5, "")),
        ("５", 1, 5, (5, "")),
        ("５分！不错", 1, 5, (5, "不错")),
        ("五", 1, 5, (5, "")),
        ("1 太慢了", 1, 5, (1, "太慢了")),
        ("4星", 1, 5, (4, "")),
        ("五星好评", 1, 5, (5, "好评")),
        (" 3 ", 1, 5, (3, "")),
        ("十", 0, 10, (10, "")),
        ("10", 0, 10, (10, "")),
        ("１０分 会推荐", 0, 10, (10, "会推荐")),
        ("零", 0, 10, (0, "")),
        ("0", 0, 10, (0, "")),
        ("6，一般", 0, 10, (6, "一般")),
        # Not answers: out of the scale, not a number first, or a number that is something else.
        ("0", 1, 5, None),
        ("6", 1, 5, None),
        ("十", 1, 5, None),
        ("11", 0, 10, None),
        ("50", 1, 5, None),
        ("4.5", 1, 5, None),
        ("5月3号到的货", 1, 5, None),
        ("很好", 1, 5, None),
        ("积分", 1, 5, None),
        ("", 1, 5, None),
    ],
)
def test_answer_forms(text: str, low: int, high: int, expected: tuple[int, str] | None) -> None:
    assert parse_score(text, low, high) == expected


async def say(client: TestClient, text: str, openid: str = OPENID) -> str:
    answer = await push(client, PLAIN, PLAIN.text(openid, text))
    assert answer.reply is not None, answer.body
    return answer.reply["Content"]


def _worker(client: TestClient) -> DeliveryWorker:
    questions = questions_store(client.app[wiring.REDIS], client.app[wiring.CONFIG])
    return delivery_worker(client, on_sent=question_opener(questions))


def _local_noon_after(at: datetime, client: TestClient) -> datetime:
    """A time past ``at`` outside the quiet hours (22:00-08:00 local)."""
    zone = client.app[wiring.CONFIG].programme.zone
    local = at.astimezone(zone)
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon >= local else noon + timedelta(days=1)).astimezone(UTC)


async def _surveys(client: TestClient) -> list[Delivery]:
    async with client.app[wiring.SESSIONS]() as session:
        query = select(Delivery).where(Delivery.category == SURVEY).order_by(Delivery.id)
        return list((await session.scalars(query)).all())


async def _ratings(client: TestClient) -> list[Rating]:
    async with client.app[wiring.SESSIONS]() as session:
        return list((await session.scalars(select(Rating).order_by(Rating.id))).all())


async def _asked(client: TestClient, standin: WeChatStandIn) -> str:
    """An order, then its question sent at its due time: the question's text as sent."""
    await follower(client, OPENID)
    await say(client, "积分")  # opens the member's 48-hour window
    assert (await call(client, "POST", "/orders", order("RT-1", OPENID, 30_000)))[0] == 201
    (row,) = await _surveys(client)
    assert row.purpose == "csat_order"
    assert row.not_before > datetime.now(UTC) + timedelta(days=2)
    worker = _worker(client)
    assert await worker.deliver(row.id, now=datetime.now(UTC)) == "not_claimed"  # not due yet
    assert await worker.deliver(row.id, now=_local_noon_after(row.not_before, client)) == "sent"
    (sent,) = [m for m in standin.sent() if "满意吗" in str(m.get("text"))]
    return str(sent["text"]["content"])


async def test_an_order_is_followed_by_a_question_answered_with_one_digit(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    question = await _asked(client, standin)
    assert "RT-1" in question
    assert "1-5" in question
    reply = await say(client, "５分 很好")
    assert reply.startswith("感谢您的评价")
    (rating,) = await _ratings(client)
    assert (rating.kind, rating.score, rating.comment) == ("csat", 5, "很好")
    assert (rating.context, rating.context_ref, rating.tier) == ("order", "RT-1", "basic")
    # The question is closed: a second score just after is thanked and stores nothing.
    assert await say(client, "4") == "感谢您的评价！"
    assert [(r.score, r.comment) for r in await _ratings(client)] == [(5, "很好")]
    # Once its short mark has gone, a digit is not a rating.
    await client.app[wiring.REDIS].delete(f"question:{OPENID}")
    assert "没有听懂" in await say(client, "4")
    assert len(await _ratings(client)) == 1


async def test_an_answered_question_is_marked_for_a_short_while_and_words_are_handled_as_usual(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _asked(client, standin)
    assert await say(client, "5分 很好") == "感谢您的评价！"
    redis = client.app[wiring.REDIS]
    assert 0 < await redis.ttl(f"question:{OPENID}") <= ANSWERED_SECONDS
    # Not a score: no reminder, the words are understood as any message's.
    assert (await say(client, "积分")).startswith("您")
    assert (await say(client, "明天会下雨吗")).startswith("抱歉，我")
    assert [r.score for r in await _ratings(client)] == [5]


async def test_a_low_score_opens_a_follow_up_and_hands_over_to_a_person(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _asked(client, standin)
    reply = await say(client, "一 配送太慢了")
    assert "客服同事会尽快联系您" in reply
    assert "转接人工客服" in reply
    (rating,) = await _ratings(client)
    assert (rating.score, rating.comment) == (1, "配送太慢了")
    async with client.app[wiring.SESSIONS]() as session:
        (follow_up,) = (await session.scalars(select(FollowUp))).all()
        (conversation,) = (await session.scalars(select(Conversation))).all()
    assert (follow_up.score, follow_up.status, follow_up.context_ref) == (1, "open", "RT-1")
    assert (conversation.reason, conversation.follow_up_id) == ("low_rating", follow_up.id)
    # The member's next words go to the person, not the bot.
    answer = await push(client, PLAIN, PLAIN.text(OPENID, "昨天就该到了"))
    assert answer.body == "success"


async def test_a_comment_follows_a_score_where_configured(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _asked(client, standin)
    reply = await say(client, "4")
    assert "回复文字" in reply
    assert await say(client, "包装可以更好") == "已收到您的建议，谢谢！"
    (rating,) = await _ratings(client)
    assert (rating.score, rating.comment) == (4, "包装可以更好")


async def test_one_reminder_then_the_question_lapses(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(delivery={"workers": 0})
    await _asked(client, standin)
    # A keyword the bot knows is answered as usual and leaves the question open.
    assert (await say(client, "积分")).startswith("您")
    assert "回复数字1-5" in await say(client, "还行吧")
    # Lapsed: handled as any message (this one the bot does not understand).
    assert (await say(client, "明天会下雨吗")).startswith("抱歉，我")
    # "5" is now just a second message the bot does not understand: a person takes over.
    assert "转接人工客服" in await say(client, "5")
    assert await _ratings(client) == []


async def test_nps_follows_csat_where_configured(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(
        delivery={"workers": 0}, programme={"ratings": {"csat_follow_up": "nps"}}
    )
    await _asked(client, standin)
    assert "0-10" in await say(client, "4")
    assert "感谢" in await say(client, "十")
    ratings = await _ratings(client)
    assert [(r.kind, r.score) for r in ratings] == [("csat", 4), ("nps", 10)]


async def test_concurrent_answers_store_one_rating(client: TestClient) -> None:
    await follower(client, OPENID)
    question = OpenQuestion("csat_conversation:C-1", "csat", "conversation", "C-1", time.time())
    await questions_store(client.app[wiring.REDIS], client.app[wiring.CONFIG]).open(
        OPENID, question
    )
    answers = await asyncio.gather(*(say(client, str(score)) for score in (5, 4, 3, 5, 2, 1)))
    assert all(a.startswith(("感谢", "非常抱歉")) for a in answers)
    assert len(await _ratings(client)) == 1


async def test_answers_arriving_one_after_another_store_one_rating_and_are_all_thanked(
    client: TestClient,
) -> None:
    """Duplicates that come after the winner closed the question (not beside it): while the
    comment it asked for is open, a bare score is not taken for the comment."""
    await follower(client, OPENID)
    question = OpenQuestion("csat_conversation:C-2", "csat", "conversation", "C-2", time.time())
    await questions_store(client.app[wiring.REDIS], client.app[wiring.CONFIG]).open(
        OPENID, question
    )
    first, *later = [await say(client, score) for score in ("4", "4", "５", "3分")]
    assert first.startswith("感谢您的评价！")
    assert "回复文字" in first
    assert later == ["感谢您的评价！"] * 3
    assert await say(client, "包装可以更好") == "已收到您的建议，谢谢！"
    assert [(r.score, r.comment) for r in await _ratings(client)] == [(4, "包装可以更好")]


async def test_closing_a_conversation_plans_its_question(client: TestClient) -> None:
    await follower(client, OPENID)
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await session.scalar(select(Member).where(Member.openid == OPENID))
        assert member is not None
        first = await plan_after_conversation(session, member.id, "C-9", datetime.now(UTC))
        again = await plan_after_conversation(session, member.id, "C-9", datetime.now(UTC))
    assert len(first) == 1
    assert again == []
    (row,) = await _surveys(client)
    assert row.payload["question"] == {
        "id": "csat_conversation:C-9",
        "kind": "csat",
        "context": "conversation",
        "ref": "C-9",
    }


async def test_the_monthly_nps_sample_is_stable_and_planned_once(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(
        delivery={"workers": 0}, programme={"ratings": {"nps_sample_percent": 30}}
    )
    for n in range(60):
        await follower(client, f"o_nps_{n:010d}")
    app = client.app
    config = app[wiring.CONFIG]
    now = datetime.now(UTC)
    context = JobContext(app[wiring.SESSIONS], config.programme, app[wiring.OUTBOX], now)
    outcome = await JOBS["nps-sample"].run(context)
    planned = int(outcome.split()[0])
    assert 5 <= planned <= 35  # about 30% of 60, chosen by a hash of member and month
    assert await JOBS["nps-sample"].run(context) == "0 NPS questions planned"
    next_month = JobContext(
        app[wiring.SESSIONS], config.programme, app[wiring.OUTBOX], now + timedelta(days=31)
    )
    await JOBS["nps-sample"].run(next_month)
    async with app[wiring.SESSIONS]() as session:
        months = await session.scalar(
            select(func.count(func.distinct(Delivery.member_id))).where(
                Delivery.purpose == "nps_sample"
            )
        )
    assert months is not None
    assert months > planned


async def test_the_satisfaction_report(client: TestClient) -> None:
    store = questions_store(client.app[wiring.REDIS], client.app[wiring.CONFIG])
    scores = {"o_rate_a0000001": ("csat", 5), "o_rate_b0000001": ("csat", 2)}
    scores |= {"o_rate_c0000001": ("nps", 10), "o_rate_d0000001": ("nps", 9)}
    scores |= {"o_rate_e0000001": ("nps", 3), "o_rate_f0000001": ("nps", 7)}
    for n, (openid, (kind, score)) in enumerate(scores.items()):
        await follower(client, openid)
        await store.open(openid, OpenQuestion(f"q{n}", kind, "sample", None, time.time()))
        await say(client, str(score), openid)
    today = datetime.now(UTC).astimezone(client.app[wiring.CONFIG].programme.zone).date()
    status, body = await call(client, "GET", f"/reports/satisfaction?from={today}&to={today}")
    assert status == 200
    (group,) = body["groups"]
    assert group["csat"] == {"count": 2, "satisfied": 1, "percent": 50.0}
    # 2 promoters, 1 passive, 1 detractor of 4: 50% - 25%.
    assert group["nps"] == {"count": 4, "promoters": 2, "detractors": 1, "score": 25.0}
    assert body["from"] == str(today)
    status, body = await call(
        client, "GET", f"/reports/satisfaction?from={today}&to={today}&group_by=month"
    )
    assert [g["group"] for g in body["groups"]] == [today.strftime("%Y-%m")]
    status, body = await call(
        client, "GET", f"/reports/satisfaction?from={today}&to={today}&group_by=tier"
    )
    assert [g["group"] for g in body["groups"]] == ["basic"]
    earlier = today - timedelta(days=3)
    status, body = await call(client, "GET", f"/reports/satisfaction?from={earlier}&to={earlier}")
    assert (status, body["groups"]) == (200, [])
    for bad in (f"from={today}", f"from={today}&to={earlier}", "from=x&to=y"):
        status, body = await call(client, "GET", f"/reports/satisfaction?{bad}")
        assert status == 422, bad
        assert body["error"]["field"] in ("to", "from")


async def test_questions_keep_the_quiet_hours_and_the_daily_cap(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    quiet = {"quiet_hours_start": "22:00", "quiet_hours_end": "08:00"}  # as shipped
    client = await app_factory(delivery={"workers": 0, "marketing_per_day": 1, **quiet})
    await follower(client, OPENID)
    await say(client, "积分")
    for ref in ("C-1", "C-2"):
        async with client.app[wiring.SESSIONS].begin() as session:
            member = await session.scalar(select(Member).where(Member.openid == OPENID))
            assert member is not None
            await plan_after_conversation(session, member.id, ref, datetime.now(UTC))
    first, second = await _surveys(client)
    noon = _local_noon_after(datetime.now(UTC), client)
    worker = _worker(client)
    assert await worker.deliver(first.id, now=noon + timedelta(hours=10)) == "deferred"  # 22:00
    next_noon = noon + timedelta(days=1)
    assert await worker.deliver(first.id, now=next_noon) == "sent"
    assert await worker.deliver(second.id, now=next_noon) == "skipped"
    rows = {row.id: row for row in await _surveys(client)}
    assert rows[second.id].reason == "frequency_cap"
    assert len([m for m in standin.sent() if "满意吗" in str(m.get("text"))]) == 1
