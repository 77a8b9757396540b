"""Handing members to people, and the console: flows over HTTP, every route's guard, logins."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, make_mocked_request
from multidict import CIMultiDict
from sqlalchemy import select, update

from bot import wiring
from bot.console.app import create_console_app
from bot.console.auth import COOKIE, client_address, hash_password
from bot.console.sweeps import ConsoleSweeps
from bot.wechat.handoff import Handoffs
from models.base import utcnow
from models.conversations import Conversation, ConversationMessage
from models.deliveries import Delivery
from models.members import Member
from models.ratings import Rating
from models.staff import AuditEntry, Staff
from tests.bot.api.test_api import call, follower
from tests.bot.console.case_routes import CASE_ROUTES
from tests.bot.push.test_delivery import eventually
from tests.helpers import PLAIN, bot_config, push, run_bot
from tests.wechat_standin import WeChatStandIn

MEMBER = "o_cs_member0001"
PASSWORD = "correct horse battery"


async def add_staff(client: TestClient, username: str, role: str, online: bool = False) -> int:
    async with client.app[wiring.SESSIONS].begin() as session:
        staff = Staff(
            username=username,
            password_hash=hash_password(PASSWORD),
            role=role,
            availability="online" if online else "offline",
            disabled=False,
            created_at=utcnow(),
        )
        session.add(staff)
        await session.flush()
        return staff.id


async def login(
    client: TestClient,
    username: str,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
) -> int:
    page = await (await client.get("/console/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    response = await client.post(
        "/console/login",
        data={"csrf": token[1], "username": username, "password": password},
        headers=headers,
        allow_redirects=False,
    )
    return response.status


async def csrf_of(client: TestClient, path: str = "/console/reports/agents") -> str:
    page = await (await client.get(path)).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, page[:300]
    return token[1]


async def say(client: TestClient, text: str, openid: str = MEMBER) -> str:
    answer = await push(client, PLAIN, PLAIN.text(openid, text))
    return answer.reply["Content"] if answer.reply else answer.body


async def conversation_of(client: TestClient, openid: str = MEMBER) -> Conversation:
    async with client.app[wiring.SESSIONS]() as session:
        found = await session.scalar(
            select(Conversation)
            .join(Member, Member.id == Conversation.member_id)
            .where(Member.openid == openid)
            .order_by(Conversation.id.desc())
        )
    assert found is not None
    return found


# Rating questions keep the quiet hours; these tests must not depend on the time they run.
NO_QUIET_HOURS = {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}


@pytest.fixture
async def console(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)


async def test_asking_for_a_person_then_an_agent_answers_and_closes(
    console: TestClient, standin: WeChatStandIn
) -> None:
    client = console
    await follower(client, MEMBER)
    assert "转接人工客服" in await say(client, "人工")
    assert "已在人工客服队列中" in await say(client, "客服")  # asking again queues once
    # While a person has the conversation the bot is silent and keeps every message.
    assert await say(client, "积分") == "success"
    await push(client, PLAIN, PLAIN.image(MEMBER, "MEDIA_1"))
    conversation = await conversation_of(client)
    assert (conversation.status, conversation.reason) == ("queued", "asked")

    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    queue = await (await client.get("/console/api/queue")).json()
    assert [c["id"] for c in queue["conversations"]] == [conversation.id]
    base = f"/console/conversations/{conversation.id}"
    assert (await client.post(f"{base}/claim", data={"csrf": token})).status == 200
    response = await client.post(f"{base}/reply", data={"csrf": token, "text": "您好，请讲"})
    assert response.status == 200
    assert {"touser": MEMBER, "msgtype": "text", "text": {"content": "您好，请讲"}} in (
        standin.sent()
    )
    updates = await (await client.get(f"/console/api/conversations/{conversation.id}")).json()
    assert [(m["direction"], m["kind"]) for m in updates["messages"]] == [
        ("in", "text"),
        ("in", "text"),
        ("in", "image"),
        ("event", "text"),
        ("out", "text"),
    ]
    assert updates["window"]["left"] == 4  # 5 per member message within 48 hours, one used
    assert (await client.post(f"{base}/close", data={"csrf": token})).status == 200
    # The member hears the person has gone, then gets the rating question; the bot is back.
    await eventually(
        lambda: _async([m for m in standin.sent() if "满意吗" in str(m.get("text", ""))])
    )
    # Once WeChat has taken it the question is open (the worker records the send first).
    await eventually(lambda: client.app[wiring.REDIS].exists(f"question:{MEMBER}"))
    assert (await say(client, "5")).startswith("感谢您的评价")
    async with client.app[wiring.SESSIONS]() as session:
        rating = await session.scalar(select(Rating))
    assert rating is not None
    assert (rating.score, rating.context, rating.context_ref) == (
        5,
        "conversation",
        str(conversation.id),
    )
    conversation = await conversation_of(client)
    assert (conversation.status, conversation.outcome) == ("closed", "closed")
    assert conversation.first_response_at is not None
    async with client.app[wiring.SESSIONS]() as session:
        actions = list((await session.scalars(select(AuditEntry.action))).all())
    assert actions == ["login", "claim", "reply", "closed"]
    assert "agent_li" in await (await client.get("/console/reports/agents")).text()


async def test_the_member_ends_it_and_two_misunderstandings_hand_over(
    console: TestClient,
) -> None:
    client = console
    await follower(client, MEMBER)
    assert "没有听懂" in await say(client, "今天天气怎么样")
    assert "积分" in await say(client, "积分")  # understood: the count starts again
    assert "没有听懂" in await say(client, "今天天气怎么样")
    assert "转接人工客服" in await say(client, "讲个笑话")
    assert (await conversation_of(client)).reason == "not_understood"
    assert "人工服务已结束" in await say(client, "结束")
    conversation = await conversation_of(client)
    assert (conversation.status, conversation.outcome) == ("returned", "member_left")
    assert "没有听懂" in await say(client, "今天天气怎么样")


async def test_wechat_mode_transfers_to_wechats_own_customer_service(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(console={"handoff": "wechat"})
    await follower(client, MEMBER)
    answer = await push(client, PLAIN, PLAIN.text(MEMBER, "人工"))
    assert answer.reply is not None
    assert answer.reply["MsgType"] == "transfer_customer_service"


async def test_auto_assignment_timeouts_and_idle_return(app_factory: Callable[..., Any]) -> None:
    client = await app_factory(console={"max_open_per_agent": 1})
    busy = await add_staff(client, "agent_busy", "agent", online=True)
    free = await add_staff(client, "agent_free", "agent", online=True)
    await add_staff(client, "agent_away", "agent")
    members = [f"o_cs_auto{n:06d}" for n in range(3)]
    for openid in members:
        await follower(client, openid)
        await say(client, "人工", openid)
    sweeps = ConsoleSweeps(
        client.app[wiring.SESSIONS],
        Handoffs(client.app[wiring.REDIS]),
        client.app[wiring.CONFIG].console,
    )
    await sweeps.sweep()
    assigned = [(await conversation_of(client, o)).assigned_to for o in members]
    # One each for the two online agents (cap 1); the third waits; nobody away gets one.
    assert sorted(a for a in assigned if a) == sorted([busy, free])
    assert assigned[2] is None
    first = await conversation_of(client, members[0])
    # Claimed and left unanswered past claim_timeout_minutes: back in the queue.
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == first.id)
            .values(assigned_at=utcnow() - timedelta(minutes=11))
        )
    await sweeps.sweep()  # requeued, then assigned again (oldest first)
    again = await conversation_of(client, members[0])
    assert again.status == "assigned"
    assert again.assigned_at is not None
    assert utcnow() - again.assigned_at < timedelta(minutes=1)
    # The member waited in the queue longer than idle_minutes: just assigned, it stays.
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == again.id)
            .values(last_activity_at=utcnow() - timedelta(minutes=31))
        )
    await sweeps.sweep()
    assert (await conversation_of(client, members[0])).status == "assigned"
    # Answered, then silent for idle_minutes: back to the bot, which answers the member again.
    long_ago = utcnow() - timedelta(minutes=31)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == again.id)
            .values(assigned_at=long_ago, last_agent_reply_at=long_ago)
        )
    await sweeps.sweep()
    ended = await conversation_of(client, members[0])
    assert (ended.status, ended.outcome) == ("returned", "idle")
    assert "没有听懂" in await say(client, "今天天气怎么样", members[0])


async def test_member_messages_reach_the_console_feed_at_once(console: TestClient) -> None:
    client = console
    await follower(client, MEMBER)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    async with client.get("/console/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b": connected\n"
        await stream.content.readline()
        await say(client, "人工")
        await say(client, "订单没收到 <script>")
        events = []
        async with asyncio.timeout(60):
            while len(events) < 2:
                line = await stream.content.readline()
                if line.startswith(b"data: "):
                    events.append(line)
    assert b'"event": "queued"' in events[0]
    assert "订单没收到 <script>" in events[1].decode()


# Every console route and the roles allowed on it; the login form is the only open one.
ROUTES = {
    ("GET", "/console/"): ("agent", "marketer", "admin"),
    ("POST", "/console/logout"): ("agent", "marketer", "admin"),
    ("GET", "/console/api/queue"): ("agent", "admin"),
    ("POST", "/console/availability"): ("agent", "admin"),
    ("GET", "/console/conversations/{id}"): ("agent", "admin"),
    ("GET", "/console/api/conversations/{id}"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/claim"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/reply"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/template"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/note"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/transfer"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/close"): ("agent", "admin"),
    ("POST", "/console/conversations/{id}/handback"): ("agent", "admin"),
    ("GET", "/console/reports/agents"): ("agent", "admin"),
    ("GET", "/console/reports/satisfaction"): ("marketer", "admin"),
    ("GET", "/console/audit"): ("admin",),
    ("GET", "/console/events"): ("agent", "admin"),
    ("GET", "/console/campaigns"): ("marketer", "admin"),
    ("GET", "/console/campaigns/new"): ("marketer", "admin"),
    ("POST", "/console/campaigns"): ("marketer", "admin"),
    ("POST", "/console/api/audience-preview"): ("marketer", "admin"),
    ("GET", "/console/campaigns/{id}"): ("marketer", "admin"),
    ("POST", "/console/campaigns/{id}/action"): ("marketer", "admin"),
    ("POST", "/console/campaigns/{id}/test"): ("marketer", "admin"),
    ("GET", "/console/dashboard"): ("marketer", "admin"),
    ("GET", "/console/reports/monthly"): ("marketer", "admin"),
    ("GET", "/console/birthdays"): ("marketer", "admin"),
    ("GET", "/console/birthdays.csv"): ("marketer", "admin"),
    ("POST", "/console/birthdays/{id}/gift"): ("marketer", "admin"),
    ("GET", "/console/hooks"): ("admin",),
    ("POST", "/console/hooks/deliveries/{id}/replay"): ("admin",),
    ("GET", "/console/templates"): ("marketer", "admin"),
    ("GET", "/console/misses"): ("agent", "admin"),
    ("POST", "/console/misses/{id}/teach"): ("agent", "admin"),
    ("GET", "/console/rewards"): ("marketer", "admin"),
    ("GET", "/console/rewards/new"): ("marketer", "admin"),
    ("POST", "/console/rewards"): ("marketer", "admin"),
    ("GET", "/console/rewards/{id}"): ("marketer", "admin"),
    ("POST", "/console/rewards/{id}"): ("marketer", "admin"),
    ("POST", "/console/rewards/{id}/retire"): ("marketer", "admin"),
    ("GET", "/console/fulfilments"): ("agent", "marketer", "admin"),
    **CASE_ROUTES,
    ("GET", "/console/follow-ups"): ("agent", "admin"),
    ("GET", "/console/follow-ups/{id}"): ("agent", "admin"),
    ("POST", "/console/follow-ups/{id}/assign"): ("agent", "admin"),
    ("POST", "/console/follow-ups/{id}/attempt"): ("agent", "admin"),
    ("POST", "/console/follow-ups/{id}/close"): ("agent", "admin"),
    ("GET", "/console/members"): ("agent", "admin"),
    ("GET", "/console/members/{id}"): ("agent", "admin"),
    ("POST", "/console/members/{id}/compensate"): ("agent", "admin"),
    ("GET", "/console/canned"): ("admin",),
    ("POST", "/console/canned"): ("admin",),
    ("POST", "/console/canned/{id}"): ("admin",),
    ("POST", "/console/canned/{id}/delete"): ("admin",),
    ("GET", "/console/staff"): ("admin",),
    ("POST", "/console/staff"): ("admin",),
    ("POST", "/console/staff/{id}/role"): ("admin",),
    ("POST", "/console/staff/{id}/password"): ("admin",),
    ("POST", "/console/staff/{id}/disable"): ("admin",),
    ("POST", "/console/staff/{id}/enable"): ("admin",),
    ("GET", "/console/benefits"): ("marketer", "admin"),
    ("POST", "/console/benefits/{code}/pause"): ("marketer", "admin"),
    ("POST", "/console/benefits/{code}/resume"): ("marketer", "admin"),
    ("POST", "/console/benefits/{code}"): ("marketer", "admin"),
}
OPEN = {("GET", "/console/login"), ("POST", "/console/login")}


def test_the_route_table_is_every_route_and_each_is_guarded() -> None:
    app = create_console_app()
    found = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = "/console" + (info.get("path") or info.get("formatter") or info.get("prefix", ""))
        path = re.sub(r"\{id:[^}]+\}", "{id}", path)
        if route.method == "HEAD" or path.startswith("/console/static"):
            continue
        found[(route.method, path)] = getattr(route.handler, "roles", None)
    assert set(found) == set(ROUTES) | OPEN
    for key, roles in ROUTES.items():
        assert found[key] == roles, key


@pytest.mark.parametrize("role", [None, "agent", "marketer", "admin"])
async def test_every_route_refuses_who_may_not_use_it(
    console: TestClient, role: str | None
) -> None:
    client = console
    await follower(client, MEMBER)
    await say(client, "人工")
    conversation = await conversation_of(client)
    token = ""
    if role is not None:
        await add_staff(client, f"user_{role}", role)
        assert await login(client, f"user_{role}") == 303
        page = "/console/audit" if role == "admin" else "/console/"
        token = await csrf_of(
            client, page if role != "marketer" else "/console/reports/satisfaction"
        )
    for (method, template), roles in ROUTES.items():
        if method == "POST" and template.endswith("logout"):
            continue
        path = template.replace("{id}", str(conversation.id)).replace("{code}", "survey")
        response = await client.request(
            method, path, data={"csrf": token} if method == "POST" else None, allow_redirects=False
        )
        if role is None:
            assert response.status == (303 if method == "GET" else 401), (method, path)
        elif role not in roles:
            assert response.status == 403, (role, method, path)
        else:  # its own role is let through and the route works
            assert response.status not in (401, 403), (role, method, path)
            assert response.status < 500, (role, method, path)
        if method == "GET" and path != "/console/events":
            await response.read()
        response.close()


async def test_state_changes_need_the_csrf_token(console: TestClient) -> None:
    client = console
    await follower(client, MEMBER)
    await say(client, "人工")
    conversation = await conversation_of(client)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    for data in ({}, {"csrf": "forged"}):
        response = await client.post(f"/console/conversations/{conversation.id}/claim", data=data)
        assert response.status == 403
    assert (await conversation_of(client)).status == "queued"
    # The login form's token is checked too.
    response = await client.post(
        "/console/login", data={"username": "agent_li", "password": PASSWORD, "csrf": "x"}
    )
    assert response.status == 403


async def test_a_session_id_planted_before_login_is_never_the_one_logged_in(
    console: TestClient,
) -> None:
    client = console
    await add_staff(client, "agent_li", "agent")
    planted = "attacker-chosen-session-id-0123456789abcdef"
    client.session.cookie_jar.update_cookies({COOKIE: planted}, client.make_url("/console/"))
    assert await login(client, "agent_li") == 303
    issued = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))[COOKIE].value
    assert issued != planted
    # The attacker, holding only the planted id, is not logged in.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as attacker:
        response = await attacker.get(
            client.make_url("/console/"),
            headers={"Cookie": f"{COOKIE}={planted}"},
            allow_redirects=False,
        )
        assert response.status == 303


async def test_logins_are_throttled_and_sessions_renewed(console: TestClient) -> None:
    client = console
    await add_staff(client, "agent_li", "agent")
    for _ in range(5):
        assert await login(client, "agent_li", "wrong password!") == 401
    # Paused: even the right password is refused without being checked.
    assert await login(client, "agent_li") == 429
    await client.app[wiring.REDIS].delete("console:login:failures:user:agent_li")
    await client.app[wiring.REDIS].delete("console:login:failures:127.0.0.1")
    assert await login(client, "agent_li") == 303
    first = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))[COOKIE].value
    assert await login(client, "agent_li") == 303  # logging in again: a new session
    second = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))[COOKIE].value
    assert first != second
    assert (await client.get("/console/", headers={"Cookie": f"{COOKIE}={first}"})).status == 200
    token = await csrf_of(client)
    response = await client.post("/console/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303
    # The old session is gone server-side, whatever the browser keeps.
    response = await client.get(
        "/console/", headers={"Cookie": f"{COOKIE}={second}"}, allow_redirects=False
    )
    assert response.status == 303
    cookie = (await client.get("/console/login")).headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


async def test_a_login_throttle_by_address_cannot_be_escaped_through_x_forwarded_for(
    console: TestClient,
) -> None:
    # Behind nginx (the test client's 127.0.0.1 is the trusted proxy), which appends the
    # address it saw to whatever X-Forwarded-For the client sent.
    client = console
    await add_staff(client, "agent_li", "agent")
    for n in range(5):
        spoofed = {"X-Forwarded-For": f"10.9.9.{n}, 203.0.113.9"}
        assert await login(client, f"nobody{n}", "wrong password!", spoofed) == 401
    # The same caller, under yet another first hop and a real username: paused by address.
    spoofed = {"X-Forwarded-For": "10.9.9.77, 203.0.113.9"}
    assert await login(client, "agent_li", headers=spoofed) == 429
    redis = client.app[wiring.REDIS]
    assert await redis.get("console:login:failures:203.0.113.9") == b"5"
    assert await redis.keys("console:login:failures:10.9.9.*") == []
    # Someone else behind the same proxy is not held back.
    assert await login(client, "agent_li", headers={"X-Forwarded-For": "198.51.100.4"}) == 303


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # nginx on this host appended the client it saw; the first hop is the client's own.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], ["127.0.0.1"], "203.0.113.9"),
        # Two proxies of ours: the load balancer's hop is skipped as well.
        (
            "127.0.0.1",
            ["6.6.6.6, 203.0.113.9, 10.0.0.5"],
            ["127.0.0.1", "10.0.0.0/8"],
            "203.0.113.9",
        ),
        # Several headers read as one list, in order.
        ("::1", ["6.6.6.6", "203.0.113.9"], ["::1"], "203.0.113.9"),
        ("::ffff:127.0.0.1", ["203.0.113.9"], ["127.0.0.1"], "203.0.113.9"),
        # A peer that is no proxy of ours: the header is not read.
        ("198.51.100.4", ["6.6.6.6"], ["127.0.0.1"], "198.51.100.4"),
        ("127.0.0.1", ["6.6.6.6"], [], "127.0.0.1"),
        # No header, or only proxies: as far as can be told.
        ("127.0.0.1", [], ["127.0.0.1"], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.7, 10.0.0.5"], ["127.0.0.1", "10.0.0.0/8"], "10.0.0.7"),
        ("127.0.0.1", ["6.6.6.6, not-an-address"], ["127.0.0.1"], "not-an-address"),
    ],
)
def test_the_caller_is_the_right_most_hop_no_trusted_proxy_added(
    peer: str, forwarded: list[str], trusted: list[str], expected: str
) -> None:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    request = make_mocked_request("POST", "/console/login", headers=headers).clone(remote=peer)
    networks = [ipaddress.ip_network(t) for t in trusted]
    assert client_address(request, networks) == expected


async def test_notes_transfer_and_what_staff_typed_stays_text(console: TestClient) -> None:
    client = console
    await follower(client, MEMBER)
    await say(client, "人工")
    await say(client, "<img src=x onerror=alert(1)>")
    conversation = await conversation_of(client)
    await add_staff(client, "agent_li", "agent")
    await add_staff(client, "agent_wang", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    base = f"/console/conversations/{conversation.id}"
    await client.post(f"{base}/claim", data={"csrf": token})
    await client.post(f"{base}/note", data={"csrf": token, "text": "老客户，<b>优先</b>"})
    page = await (await client.get(base)).text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;b&gt;优先&lt;/b&gt;" in page
    assert (
        await client.post(f"{base}/transfer", data={"csrf": token, "to": "agent_wang"})
    ).status == 200
    # No longer ours: replying is refused.
    response = await client.post(f"{base}/reply", data={"csrf": token, "text": "在吗"})
    assert response.status == 409
    async with client.app[wiring.SESSIONS]() as session:
        notes = (
            await session.scalars(
                select(ConversationMessage.content).where(ConversationMessage.direction == "note")
            )
        ).all()
        assignee = await session.scalar(
            select(Staff.username).join(Conversation, Conversation.assigned_to == Staff.id)
        )
    assert list(notes) == ["老客户，<b>优先</b>"]
    assert assignee == "agent_wang"


async def test_a_closed_window_offers_the_template(
    app_factory: Callable[..., Any], standin: WeChatStandIn
) -> None:
    template = {"template_id": "TPL_CS", "fields": {"first": "title", "keyword1": "content"}}
    client = await app_factory(
        console={"assignment": "claim"}, delivery={"templates": {"service_reply": template}}
    )
    await follower(client, MEMBER)
    await say(client, "人工")
    conversation = await conversation_of(client)
    await client.app[wiring.REDIS].delete(f"cs:window:{MEMBER}")  # 48 hours have passed
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client)
    base = f"/console/conversations/{conversation.id}"
    await client.post(f"{base}/claim", data={"csrf": token})
    page = await (await client.get(base)).text()
    assert "回复窗口已关闭" in page
    assert "以模板消息发送" in page
    response = await client.post(f"{base}/reply", data={"csrf": token, "text": "您好"})
    assert response.status == 409
    response = await client.post(f"{base}/template", data={"csrf": token, "text": "已为您补发"})
    assert response.status == 200
    (sent,) = await eventually(lambda: _async(standin.sent("/cgi-bin/message/template/send")))
    assert sent["data"]["keyword1"] == {"value": "已为您补发"}
    async with client.app[wiring.SESSIONS]() as session:
        purposes = (await session.scalars(select(Delivery.purpose))).all()
    assert "service_reply" in purposes


async def _async(value: Any) -> Any:
    return value


async def test_outside_service_hours_the_member_is_told_when(
    app_factory: Callable[..., Any],
) -> None:
    # A service day that starts and ends at the same minute: always outside it.
    client = await app_factory(
        console={"service_hours_start": "09:00", "service_hours_end": "09:00"}
    )
    await follower(client, MEMBER)
    reply = await say(client, "人工")
    assert "人工客服的服务时间是每天09:00-09:00" in reply
    assert (await conversation_of(client)).status == "queued"  # still queued for the morning


async def test_a_service_day_ending_at_24_00_is_open_round_the_clock(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(
        console={"service_hours_start": "00:00", "service_hours_end": "24:00"}
    )
    await follower(client, MEMBER)
    reply = await say(client, "人工")
    assert "转接人工客服" in reply
    assert "服务时间" not in reply


async def test_staff_accounts_from_the_command_line(
    client: TestClient, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    code, out, _ = await _staff_cli(config, "add", "agent_zhao", "--role", "agent", PASSWORD)
    assert (code, out.strip()) == (0, "staff agent_zhao added as agent")
    code, _, err = await _staff_cli(config, "add", "agent_zhao", "--role", "agent", PASSWORD)
    assert code == 2
    assert "exists already" in err
    code, _, err = await _staff_cli(config, "add", "agent_qian", "--role", "agent", "short")
    assert code == 2
    assert "at least 10 characters" in err
    # The console's staff page applies the same rules (models/staff_accounts.py).
    code, _, err = await _staff_cli(config, "add", "Agent Qian", "--role", "agent", PASSWORD)
    assert code == 2
    assert "a username is" in err
    assert await login(client, "agent_zhao") == 303
    assert (await client.get("/console/", allow_redirects=False)).status == 200
    code, out, _ = await _staff_cli(config, "disable", "agent_zhao")
    assert code == 0
    # Disabled: the open session ends and the password no longer signs in.
    assert (await client.get("/console/", allow_redirects=False)).status == 303
    assert await login(client, "agent_zhao") == 401


async def _staff_cli(config: Path, *args: str) -> tuple[int, str, str]:
    """``python -m bot staff ...``; for ``add`` the last argument is the password (stdin)."""
    if args[0] == "add":
        *command, password = args
        return await run_bot(config, "staff", *command, "--password-stdin", stdin=f"{password}\n")
    return await run_bot(config, "staff", *args)


async def test_a_conversation_ended_elsewhere_gives_the_member_back_to_the_bot(
    console: TestClient,
) -> None:
    await follower(console, MEMBER)
    await say(console, "人工")
    conversation = await conversation_of(console)
    # Ended while the member was typing (the console, or an erasure): Redis still says
    # "with a person", the database no longer does.
    async with console.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation.id)
            .values(status="returned", outcome="idle")
        )
    assert (await say(console, "积分")).startswith("您目前还没有积分")
    assert await console.app[wiring.REDIS].get(f"handoff:{MEMBER}") is None


async def test_a_follower_who_talked_to_a_person_can_still_bind(console: TestClient) -> None:
    _, created = await call(
        console, "POST", "/members/binding-codes", {"customer_ref": "CRM-9", "name": "李四"}
    )
    await follower(console, MEMBER)
    await say(console, "人工")
    await say(console, "结束")
    assert "绑定成功" in await say(console, f"绑定 {created['code']}")
    async with console.app[wiring.SESSIONS]() as session:
        moved = await session.scalar(
            select(Member.customer_ref)
            .join(Conversation, Conversation.member_id == Member.id)
            .where(Member.openid == MEMBER)
        )
    assert moved == "CRM-9"  # the conversation followed the member into the customer's row
