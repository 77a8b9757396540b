"""Customer service's work list: the planned calls (once per member and period, set-based),
working a follow-up to an outcome, and the figures it feeds (回访接通率, completion)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.binding import claim_binding_code, create_binding_code
from models.figures import programme_figures
from models.follow_ups import (
    AT_RISK_CALL,
    HIGH_TICKET_CALL,
    FollowUpAttempt,
    FollowUpRefused,
    assign,
    close_follow_up,
    plan_calls,
    quarter_period,
    record_attempt,
    service_rates,
    work_list,
)
from models.members import Member
from models.orders import Order
from models.personal_data import erase_member, export_member
from models.ratings import FollowUp
from models.rules import CallbackRules, ProgrammeRules
from models.staff import Staff

NOW = datetime(2026, 11, 1, 20, 0, tzinfo=UTC)  # 04:00 on 2 November in Shanghai
RULES = ProgrammeRules()
_serial = itertools.count()


async def _member(
    session: AsyncSession,
    segment: str | None,
    orders: list[int],
    phone: str | None = "13812345678",
    tier: str = "gold",
) -> int:
    member = Member(
        openid=f"o_fu_{next(_serial)}",
        phone=phone,
        segment=segment,
        tier=tier,
        subscribed=True,
        created_at=NOW - timedelta(days=400),
    )
    session.add(member)
    await session.flush()
    for i, amount in enumerate(orders):
        n = next(_serial)
        session.add(
            Order(
                shop_order_id=f"FU-{n}",
                member_id=member.id,
                amount_fen=amount,
                refunded_fen=0,
                paid_at=NOW - timedelta(days=90 + i),
                channel="shop",
                points_earned=0,
                fingerprint=f"fp-{n}",
                created_at=NOW,
            )
        )
    await session.flush()
    return member.id


async def _staff(session: AsyncSession, username: str) -> int:
    staff = Staff(
        username=username, password_hash="x", role="agent", disabled=False, created_at=NOW
    )
    session.add(staff)
    await session.flush()
    return staff.id


async def _calls(session: AsyncSession) -> list[tuple[int, str, str | None]]:
    rows = await session.execute(
        select(FollowUp.member_id, FollowUp.purpose, FollowUp.period).order_by(FollowUp.id)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_calls_are_planned_by_rule_once_per_member_and_period(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        # At risk, ¥6,000 in 12 months, a phone: called. Three small orders: no call.
        rich = await _member(session, "at_risk", [200_000, 200_000, 200_000])
        poor = await _member(session, "at_risk", [1_000, 1_000, 1_000])
        no_phone = await _member(session, "at_risk", [300_000, 300_000, 300_000], phone=None)
        # Average order ¥1,500 over 2 orders: the quarterly call. One big order: too few.
        high = await _member(session, "core", [150_000, 150_000])
        single = await _member(session, "core", [500_000])
    async with sessions.begin() as session:
        assert await plan_calls(session, RULES, NOW) == {AT_RISK_CALL: 1, HIGH_TICKET_CALL: 2}
    async with sessions.begin() as session:  # a second run adds nothing
        assert await plan_calls(session, RULES, NOW) == {AT_RISK_CALL: 0, HIGH_TICKET_CALL: 0}
        calls = await _calls(session)
    assert sorted(calls) == sorted(
        [
            (rich, AT_RISK_CALL, "2026-11"),
            (rich, HIGH_TICKET_CALL, "2026-Q4"),  # ¥2,000 a time: high-ticket as well
            (high, HIGH_TICKET_CALL, "2026-Q4"),
        ]
    )
    assert {poor, no_phone, single}.isdisjoint({member for member, *_ in calls})

    # December: the rich member's November call is still open, so no second one; once it is
    # closed, January's run lists them again. The quarter's call is not repeated in December.
    december = NOW + timedelta(days=30)
    async with sessions.begin() as session:
        assert await plan_calls(session, RULES, december) == {AT_RISK_CALL: 0, HIGH_TICKET_CALL: 0}
        agent = await _staff(session, "agent_fu")
        (november,) = await work_list(session, purpose=AT_RISK_CALL)
        await close_follow_up(session, november.follow_up.id, agent, "resolved", "", december)
    january = NOW + timedelta(days=62)
    async with sessions.begin() as session:
        planned = await plan_calls(session, RULES, january)
    # A new quarter, but both high-ticket calls of the last are still open: none added.
    assert planned == {AT_RISK_CALL: 1, HIGH_TICKET_CALL: 0}
    assert quarter_period(RULES, january) == "2027-Q1"


async def test_a_threshold_of_zero_turns_a_call_off(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rules = ProgrammeRules(
        callbacks=CallbackRules(at_risk_min_spend_fen=0, high_ticket_min_aov_fen=0)
    )
    async with sessions.begin() as session:
        await _member(session, "at_risk", [200_000, 200_000, 200_000])
        assert await plan_calls(session, rules, NOW) == {AT_RISK_CALL: 0, HIGH_TICKET_CALL: 0}


async def test_a_follow_up_is_worked_to_an_outcome_and_counted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        member = await _member(session, "at_risk", [200_000, 200_000, 200_000], tier="gold")
        await plan_calls(session, RULES, NOW)
        li, wang = await _staff(session, "agent_li"), await _staff(session, "agent_wang")
        (item,) = await work_list(session, purpose=AT_RISK_CALL)
        call = item.follow_up.id
    later = NOW + timedelta(hours=2)
    async with sessions.begin() as session:
        # The first attempt makes it Li's; Wang cannot work Li's follow-up.
        await record_attempt(session, call, li, False, "无人接听", later)
    async with sessions.begin() as session:
        with pytest.raises(FollowUpRefused) as refused:
            await record_attempt(session, call, wang, True, "", later)
        assert refused.value.reason == "not_yours"
        with pytest.raises(FollowUpRefused):
            await assign(session, call, wang, wang, admin=False)
    async with sessions.begin() as session:
        await record_attempt(session, call, li, True, "会员说最近搬家了", later)
        with pytest.raises(FollowUpRefused) as refused:
            await close_follow_up(session, call, li, "maybe", "", later)
        assert refused.value.reason == "bad_outcome"
        await close_follow_up(session, call, li, "resolved", "已寄回归礼包", later)
    async with sessions() as session:
        assert [i.member.id for i in await work_list(session, assigned_to=li)] == []
        (done,) = await work_list(session, status="closed", assigned_to=li)
        assert (done.member.id, done.attempts, done.connected) == (member, 2, 1)
        assert done.follow_up.outcome_note == "已寄回归礼包"
        with pytest.raises(FollowUpRefused) as refused:
            await record_attempt(session, call, li, True, "", later)
        assert refused.value.reason == "closed"
        # Its high-ticket call is still open and overdue a month on.
        (overdue,) = await work_list(session, overdue_at=NOW + timedelta(days=30))
        assert overdue.follow_up.purpose == HIGH_TICKET_CALL

        rates = await service_rates(session, NOW - timedelta(days=1), NOW + timedelta(days=40))
        assert (rates.attempts, rates.connected, rates.connection_percent) == (2, 1, 50.0)
        # Due in the span: both calls; the at-risk one closed in time, the other not yet.
        assert (rates.due, rates.completed, rates.completion_percent) == (2, 1, 50.0)

        report = await programme_figures(
            session, RULES, date(2026, 11, 1), NOW + timedelta(days=40)
        )
    connect = report.figures["callback_connect"]
    assert connect.months["2026-11"] == (1, 2)
    assert connect.by_tier == {"gold": (1, 2)}
    completion = report.figures["follow_up_completion"]
    assert completion.months["2026-11"] == (1, 2)  # both due in November (local)


async def test_erasing_a_member_blanks_the_call_notes_and_closes_their_follow_ups(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        member_id = await _member(session, "at_risk", [200_000, 200_000, 200_000])
        await plan_calls(session, RULES, NOW)
        agent = await _staff(session, "agent_pipl")
        calls = await work_list(session)
        await record_attempt(session, calls[0].follow_up.id, agent, True, "住在朝阳区", NOW)
        await close_follow_up(session, calls[0].follow_up.id, agent, "resolved", "电话聊过", NOW)
    async with sessions.begin() as session:
        member = await session.get_one(Member, member_id)
        exported = await export_member(session, member)
        assert [a["note"] for a in exported["follow_up_attempts"]] == ["住在朝阳区"]
        await erase_member(session, member, NOW)
    async with sessions() as session:
        notes = (await session.scalars(select(FollowUpAttempt.note))).all()
        rows = (await session.scalars(select(FollowUp).order_by(FollowUp.id))).all()
    assert notes == [""]
    assert [(f.status, f.outcome, f.outcome_note) for f in rows] == [
        ("closed", "resolved", None),
        ("closed", "erased", None),
    ]


async def test_binding_keeps_one_call_per_period_of_the_merged_member(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        code = await create_binding_code(session, "CUST-1", NOW, 24, phone="13800000000")
        customer = code.member_id
        follower = await _member(session, None, [])
        for member_id in (customer, follower):
            session.add(
                FollowUp(
                    member_id=member_id,
                    purpose=AT_RISK_CALL,
                    period="2026-11",
                    status="open",
                    due_at=NOW,
                    created_at=NOW,
                )
            )
        follower_openid = (await session.get_one(Member, follower)).openid
        assert follower_openid is not None
    async with sessions.begin() as session:
        await claim_binding_code(session, code.code, follower_openid, NOW)
    async with sessions() as session:
        assert await _calls(session) == [(customer, AT_RISK_CALL, "2026-11")]
