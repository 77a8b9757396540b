"""Cases (issue 20, item 2) and service figures (item 6): a case outlives the conversation's
idle return; the agent writes to the member later (in the window a customer-service message,
outside it the service_reply template, neither: a clear refusal), closes and reopens it; past
due it is red and first; every action is audited; every route is guarded and needs CSRF."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wiring
from bot.console.sweeps import ConsoleSweeps
from bot.wechat.handoff import Handoffs
from messages import service_copy
from models.base import utcnow
from models.cases import CaseEntry, ServiceCase, close_case, open_case
from models.conversations import Conversation, ConversationMessage
from models.deliveries import Delivery
from models.service_figures import service_figures
from models.staff import AuditEntry
from tests.bot.api.test_api import follower
from tests.bot.console.case_routes import CASE_ROUTES
from tests.bot.console.test_console import (
    NO_QUIET_HOURS,
    _async,
    add_staff,
    conversation_of,
    csrf_of,
    login,
    say,
)
from tests.bot.push.test_delivery import eventually
from tests.wechat_standin import WeChatStandIn

MEMBER = "o_case_member001"
TEMPLATE = {"template_id": "TPL_CS", "fields": {"first": "title", "keyword1": "content"}}


async def conversation_answered(client: TestClient, token: str, openid: str = MEMBER) -> int:
    """The member asks for a person and says what is wrong; the agent claims and answers."""
    await follower(client, openid)
    await say(client, "人工", openid)
    await say(client, "退货申请一直没人处理", openid)
    conversation = await conversation_of(client, openid)
    base = f"/console/conversations/{conversation.id}"
    assert (await client.post(f"{base}/claim", data={"csrf": token})).status == 200
    reply = await client.post(f"{base}/reply", data={"csrf": token, "text": "我来为您登记"})
    assert reply.status == 200
    return conversation.id


async def open_case_for(client: TestClient, token: str, conversation_id: int, **form: str) -> int:
    response = await client.post(
        "/console/cases",
        data={"csrf": token, "conversation": str(conversation_id), "category": "returns", **form},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    found = re.search(r"/console/cases/(\d+)$", response.headers["Location"])
    assert found
    return int(found[1])


async def idle_return(client: TestClient, conversation_id: int) -> None:
    """The conversation falls silent past idle_minutes: the sweep gives it back to the bot."""
    long_ago = utcnow() - timedelta(minutes=31)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(assigned_at=long_ago, last_activity_at=long_ago, last_agent_reply_at=long_ago)
        )
    sweeps = ConsoleSweeps(
        client.app[wiring.SESSIONS],
        Handoffs(client.app[wiring.REDIS]),
        client.app[wiring.CONFIG].console,
    )
    await sweeps.sweep()
    assert (await conversation_of(client, MEMBER)).outcome == "idle"


@pytest.fixture
async def templated(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory(
        console={"assignment": "claim"},
        delivery={"templates": {"service_reply": TEMPLATE}, **NO_QUIET_HOURS},
    )


async def test_a_case_outlives_the_idle_return_and_reaches_the_member_both_ways(
    templated: TestClient, standin: WeChatStandIn
) -> None:
    client = templated
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    conversation_id = await conversation_answered(client, token)
    case_id = await open_case_for(client, token, conversation_id, notes="答应24小时内回复")
    async with client.app[wiring.SESSIONS]() as session:
        case = await session.get_one(ServiceCase, case_id)
        first = await session.scalar(
            select(ConversationMessage.created_at)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.id)
        )
    assert first is not None
    # Due 24 hours (resolve_hours) after the member's first message of the conversation.
    assert case.due_at == first + timedelta(hours=24)
    assert (case.status, case.category, case.notes) == ("open", "returns", "答应24小时内回复")
    page = await (await client.get(f"/console/conversations/{conversation_id}")).text()
    assert f"/console/cases/{case_id}" in page

    await idle_return(client, conversation_id)
    page = await (await client.get(f"/console/cases/{case_id}")).text()
    assert "处理中" in page
    assert "还可发送" in page

    # Inside the 48-hour window: a customer-service message.
    base = f"/console/cases/{case_id}"
    response = await client.post(f"{base}/write", data={"csrf": token, "text": "退货已受理"})
    assert response.status == 200
    assert {"touser": MEMBER, "msgtype": "text", "text": {"content": "退货已受理"}} in (
        standin.sent()
    )
    # 48 hours later the window has closed: the service_reply template takes it.
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")
    assert "将以客服回复模板消息发送" in await (await client.get(base)).text()
    response = await client.post(f"{base}/write", data={"csrf": token, "text": "退款已到账"})
    assert response.status == 200
    (sent,) = await eventually(lambda: _async(standin.sent("/cgi-bin/message/template/send")))
    assert (sent["touser"], sent["data"]["keyword1"]) == (MEMBER, {"value": "退款已到账"})
    # A template message is short: a longer text is refused with the reason, nothing sent.
    response = await client.post(f"{base}/write", data={"csrf": token, "text": "长" * 201})
    assert response.status == 400
    assert await response.text() == service_copy.CASE_TOO_LONG_FOR_TEMPLATE

    response = await client.post(f"{base}/close", data={"csrf": token, "outcome": "已退款"})
    assert response.status == 200
    response = await client.post(f"{base}/close", data={"csrf": token, "outcome": "again"})
    assert response.status == 409
    response = await client.post(f"{base}/write", data={"csrf": token, "text": "还在吗"})
    assert response.status == 409
    response = await client.post(f"{base}/reopen", data={"csrf": token, "reason": "会员说没收到"})
    assert response.status == 200
    async with client.app[wiring.SESSIONS]() as session:
        case = await session.get_one(ServiceCase, case_id)
        kinds = (await session.scalars(select(CaseEntry.kind).order_by(CaseEntry.id))).all()
        actions = (
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target == f"case:{case_id}")
                .order_by(AuditEntry.id)
            )
        ).all()
    assert (case.status, case.reopened, case.outcome) == ("open", 1, None)
    assert list(kinds) == ["opened", "message", "template", "closed", "reopened"]
    assert list(actions) == ["case_open", "case_write", "case_write", "case_close", "case_reopen"]


async def test_without_a_template_a_closed_window_is_refused_clearly(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    client = await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    case_id = await open_case_for(client, token, await conversation_answered(client, token))
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")
    page = await (await client.get(f"/console/cases/{case_id}")).text()
    assert "尚未配置客服回复模板" in page
    sent_before = len(standin.sent())
    response = await client.post(
        f"/console/cases/{case_id}/write", data={"csrf": token, "text": "处理好了"}
    )
    assert response.status == 409
    assert await response.text() == service_copy.CASE_NO_WAY
    async with client.app[wiring.SESSIONS]() as session:
        purposes = (await session.scalars(select(Delivery.purpose))).all()
        kinds = (await session.scalars(select(CaseEntry.kind))).all()
    assert "service_reply" not in purposes
    assert list(kinds) == ["opened"]
    assert len(standin.sent()) == sent_before


async def test_bad_input_is_refused_and_changes_nothing(templated: TestClient) -> None:
    client = templated
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    conversation_id = await conversation_answered(client, token)
    bad = [
        ({"category": "refund"}, 400, service_copy.CASE_BAD_CATEGORY),
        ({"category": "returns", "due": "tomorrow"}, 400, service_copy.CASE_BAD_DUE),
        ({"category": "returns", "due": "2020-01-01T10:00"}, 400, service_copy.CASE_BAD_DUE),
        ({"category": "returns", "notes": "x" * 2001}, 400, service_copy.CASE_NOTES_LENGTH),
    ]
    for form, status, text in bad:
        response = await client.post(
            "/console/cases", data={"csrf": token, "conversation": str(conversation_id), **form}
        )
        assert (response.status, await response.text()) == (status, text), form
    response = await client.post(
        "/console/cases", data={"csrf": token, "conversation": "999999", "category": "returns"}
    )
    assert response.status == 404
    case_id = await open_case_for(client, token, conversation_id, due="2099-01-01T10:00")
    again = await client.post(
        "/console/cases",
        data={"csrf": token, "conversation": str(conversation_id), "category": "other"},
    )
    assert (again.status, await again.text()) == (409, service_copy.CASE_EXISTS)
    base = f"/console/cases/{case_id}"
    for path, form in (
        ("close", {"outcome": ""}),
        ("reopen", {"reason": "x"}),
        ("update", {"category": "nope"}),
        ("write", {"text": ""}),
    ):
        response = await client.post(f"{base}/{path}", data={"csrf": token, **form})
        assert response.status in (400, 409), path
    for query in ("state=late", "category=refund"):
        assert (await client.get(f"/console/cases?{query}")).status == 400
    assert (await client.get("/console/reports/service?days=0")).status == 400
    async with client.app[wiring.SESSIONS]() as session:
        cases = (await session.scalars(select(ServiceCase))).all()
    assert [(c.status, c.category, c.due_at.year) for c in cases] == [("open", "returns", 2099)]


async def test_overdue_cases_are_red_and_first_and_the_list_filters(
    templated: TestClient,
) -> None:
    client = templated
    li = await add_staff(client, "agent_li", "agent")
    wang = await add_staff(client, "agent_wang", "agent")
    members = [f"o_case_list{n:05d}" for n in range(3)]
    async with client.app[wiring.SESSIONS].begin() as session:
        for openid in members:
            await follower(client, openid)
        conversation_ids = []
        for openid in members:
            await say(client, "人工", openid)
            conversation_ids.append((await conversation_of(client, openid)).id)
    now = utcnow()
    plans = [
        (li, "returns", now + timedelta(hours=5)),  # open, due later
        (wang, "logistics", now - timedelta(hours=2)),  # overdue
        (li, "points", now - timedelta(hours=30)),  # overdue longest
    ]
    ids = []
    async with client.app[wiring.SESSIONS].begin() as session:
        for conversation_id, (owner, category, due) in zip(conversation_ids, plans, strict=True):
            conversation = await session.get_one(Conversation, conversation_id)
            made = await open_case(session, conversation, owner, category, "", due, now)
            assert made is not None
            ids.append(made.id)
    assert await login(client, "agent_li") == 303

    async def listed(query: str = "") -> list[tuple[int, bool]]:
        page = await (await client.get(f"/console/cases{query}")).text()
        rows = re.findall(r'<tr data-case="(\d+)" (class="overdue")?', page)
        return [(int(case_id), bool(red)) for case_id, red in rows]

    assert await listed() == [(ids[2], True), (ids[1], True), (ids[0], False)]
    assert await listed("?mine=1") == [(ids[2], True), (ids[0], False)]
    assert await listed("?state=overdue&category=logistics") == [(ids[1], True)]
    assert await listed("?state=closed") == []
    page = await (await client.get(f"/console/cases/{ids[2]}")).text()
    assert "已逾期" in page


async def test_two_agents_at_once_make_one_case_and_close_it_once(
    templated: TestClient,
) -> None:
    client = templated
    li = await add_staff(client, "agent_li", "agent")
    wang = await add_staff(client, "agent_wang", "agent")
    await follower(client, MEMBER)
    await say(client, "人工", MEMBER)
    conversation_id = (await conversation_of(client, MEMBER)).id
    sessions = client.app[wiring.SESSIONS]
    now = utcnow()

    async def open_one(staff_id: int) -> int | None:
        async with sessions.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            made = await open_case(
                session, conversation, staff_id, "quality", "", now + timedelta(days=1), now
            )
            return made.id if made else None

    made = await asyncio.gather(open_one(li), open_one(wang))
    assert sorted(made, key=lambda m: m is None)[1] is None
    case_id = next(m for m in made if m is not None)

    async def close_one(session: AsyncSession, staff_id: int) -> bool:
        return await close_case(session, case_id, staff_id, "done", now)

    async def close_apart(staff_id: int) -> bool:
        async with sessions.begin() as session:
            return await close_one(session, staff_id)

    closed = await asyncio.gather(close_apart(li), close_apart(wang))
    assert sorted(closed) == [False, True]
    async with sessions() as session:
        entries = (await session.scalars(select(CaseEntry.kind).order_by(CaseEntry.id))).all()
    assert list(entries) == ["opened", "closed"]


async def test_service_figures(templated: TestClient) -> None:
    client = templated
    li = await add_staff(client, "agent_li", "agent")
    wang = await add_staff(client, "agent_wang", "agent")
    now = datetime(2026, 12, 9, 6, 0, tzinfo=UTC)
    members = [f"o_case_fig{n:06d}" for n in range(4)]
    for openid in members:
        await follower(client, openid)
        await say(client, "人工", openid)
    conversations = [(await conversation_of(client, openid)).id for openid in members]
    sessions = client.app[wiring.SESSIONS]
    # Queued an hour before now; li answered two (one in 10 minutes, one in 2 hours), wang one
    # in 30 minutes, one nobody answered.
    answers = [(li, 10), (li, 120), (wang, 30), (None, None)]
    async with sessions.begin() as session:
        for conversation_id, (agent, minutes) in zip(conversations, answers, strict=True):
            queued = now - timedelta(hours=3)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(
                    queued_at=queued,
                    assigned_to=agent,
                    status="assigned" if agent else "queued",
                    first_response_at=queued + timedelta(minutes=minutes) if minutes else None,
                )
            )
        cases = [
            (li, "returns", now - timedelta(minutes=30), now - timedelta(hours=1)),  # in due
            (li, "quality", now - timedelta(hours=2), None),  # open, overdue
            (wang, "returns", now + timedelta(hours=2), None),  # open, not yet due
        ]
        for conversation_id, (owner, category, due, closed) in zip(
            conversations, cases, strict=False
        ):
            conversation = await session.get_one(Conversation, conversation_id)
            made = await open_case(
                session, conversation, owner, category, "", due, now - timedelta(hours=3)
            )
            assert made is not None
            if closed:
                assert await close_case(session, made.id, owner, "ok", closed)
    async with sessions() as session:
        figures = await service_figures(session, now - timedelta(days=1), now, now, 60)
    total = figures.total
    assert (total.queued, total.picked_in_target) == (4, 2)
    assert (total.cases_opened, total.cases_in_due, total.cases_closed) == (3, 1, 1)
    assert (total.open_now, total.overdue_now) == (2, 1)
    returns, quality = figures.by_category["returns"], figures.by_category["quality"]
    assert (returns.cases_opened, returns.cases_in_due, returns.open_now) == (2, 1, 1)
    assert (quality.open_now, quality.overdue_now) == (1, 1)
    by_agent = figures.by_agent
    assert (by_agent["agent_li"].queued, by_agent["agent_li"].picked_in_target) == (2, 1)
    assert (by_agent["agent_li"].in_due_rate, by_agent["agent_li"].overdue_now) == (50.0, 1)
    assert by_agent["agent_wang"].pickup_rate == 100.0
    # And on the console, for every staff role.
    assert await login(client, "agent_li") == 303
    page = await (await client.get("/console/reports/service")).text()
    assert "服务指标" in page
    assert "agent_wang" in page


@pytest.mark.parametrize("role", [None, "agent", "marketer", "admin"])
async def test_every_case_route_refuses_who_may_not_use_it(
    templated: TestClient, role: str | None
) -> None:
    client = templated
    await add_staff(client, "agent_owner", "agent")
    assert await login(client, "agent_owner") == 303
    owner_token = await csrf_of(client)
    case_id = await open_case_for(
        client, owner_token, await conversation_answered(client, owner_token)
    )
    client.session.cookie_jar.clear()
    token = ""
    if role is not None:
        await add_staff(client, f"user_{role}", role)
        assert await login(client, f"user_{role}") == 303
        token = await csrf_of(client, "/console/reports/service")
    forms = {
        "/console/cases": {"conversation": "1", "category": "other"},
        "write": {"text": "您好"},
        "update": {"category": "other"},
        "close": {"outcome": "done"},
        "reopen": {"reason": "again"},
    }
    for (method, template), roles in CASE_ROUTES.items():
        path = template.replace("{id}", str(case_id))
        form = forms.get(path, forms.get(path.rsplit("/", 1)[-1], {}))
        response = await client.request(
            method,
            path,
            data={"csrf": token, **form} if method == "POST" else None,
            allow_redirects=False,
        )
        if role is None:
            assert response.status == (303 if method == "GET" else 401), (method, path)
        elif role not in roles:
            assert response.status == 403, (role, method, path)
        else:
            assert response.status not in (401, 403), (role, method, path)
            assert response.status < 500, (role, method, path, await response.text())
        await response.read()


async def test_every_case_form_needs_the_csrf_token(templated: TestClient) -> None:
    client = templated
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    conversation_id = await conversation_answered(client, token)
    case_id = await open_case_for(client, token, conversation_id)
    async with client.app[wiring.SESSIONS]() as session:
        audited = await session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
    posts = [(m, p) for m, p in CASE_ROUTES if m == "POST"]
    assert posts
    for _, template in posts:
        path = template.replace("{id}", str(case_id))
        for data in ({}, {"csrf": "forged"}):
            form = {
                **data,
                "conversation": str(conversation_id),
                "category": "other",
                "text": "x",
                "outcome": "x",
                "reason": "x",
            }
            response = await client.post(path, data=form)
            assert response.status == 403, path
    async with client.app[wiring.SESSIONS]() as session:
        last = await session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
        case = await session.get_one(ServiceCase, case_id)
    assert last == audited  # nothing done, nothing audited
    assert (case.status, case.category) == ("open", "returns")
