"""Customer service's tools over HTTP: the work list, member search and card, compensation,
canned replies and staff accounts; who may do what, and the CSRF token on every form.
(Every route's roles are in test_console.py's ROUTES.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot import wiring
from bot.console.auth import SESSIONS
from models.base import utcnow
from models.binding import BindingCode
from models.canned import CannedReply
from models.cases import open_case
from models.conversations import Conversation
from models.coupons import Coupon
from models.follow_ups import AT_RISK_CALL, FollowUpAttempt
from models.ledger import LedgerEntry
from models.members import Member
from models.order_posting import record_order
from models.orders import OrderIn
from models.ratings import FollowUp, Rating
from models.referrals import Referral
from models.staff import AuditEntry, Staff, find_staff
from tests.bot.api.test_api import follower
from tests.bot.console.test_console import (
    NO_QUIET_HOURS,
    PASSWORD,
    add_staff,
    conversation_of,
    csrf_of,
    login,
    say,
)

PHONE = "13812345678"
CHATTER = "o_cs_tools_chatter1"


@pytest.fixture
async def console(app_factory: Callable[..., Any]) -> TestClient:
    return await app_factory(console={"assignment": "claim"}, delivery=NO_QUIET_HOURS)


async def add_member(client: TestClient, openid: str = "o_cs_tools_anna", **values: Any) -> int:
    async with client.app[wiring.SESSIONS].begin() as session:
        member = Member(
            openid=openid,
            subscribed=True,
            created_at=utcnow(),
            **({"name": "王芳", "phone": PHONE, "tier": "gold"} | values),
        )
        session.add(member)
        await session.flush()
        return member.id


async def add_call(client: TestClient, member_id: int, overdue: bool = False) -> int:
    now = utcnow()
    async with client.app[wiring.SESSIONS].begin() as session:
        follow_up = FollowUp(
            member_id=member_id,
            purpose=AT_RISK_CALL,
            period=f"{now:%Y-%m}",
            status="open",
            due_at=now + timedelta(days=-1 if overdue else 7),
            created_at=now,
        )
        session.add(follow_up)
        await session.flush()
        return follow_up.id


async def actions(client: TestClient) -> list[str]:
    async with client.app[wiring.SESSIONS]() as session:
        # In the order done: PostgreSQL returns rows unordered without ORDER BY.
        query = select(AuditEntry.action).order_by(AuditEntry.id)
        return list((await session.scalars(query)).all())


async def test_a_call_is_taken_tried_and_closed(console: TestClient) -> None:
    client = console
    member = await add_member(client)
    call = await add_call(client, member, overdue=True)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client, "/console/follow-ups")
    page = await (await client.get("/console/follow-ups?overdue=1")).text()
    for shown in ("流失风险回访", "已逾期", "王芳"):
        assert shown in page
    assert "没有符合条件" in await (await client.get("/console/follow-ups?mine=1")).text()
    # Before taking it the agent sees the number masked; the assignee sees it whole.
    base = f"/console/follow-ups/{call}"
    assert "138****5678" in await (await client.get(base)).text()
    assert (await client.post(f"{base}/assign", data={"csrf": token})).status == 200
    assert PHONE in await (await client.get(base)).text()
    response = await client.post(
        f"{base}/attempt", data={"csrf": token, "connected": "no", "note": "无人接听"}
    )
    assert response.status == 200
    response = await client.post(f"{base}/attempt", data={"csrf": token, "connected": "maybe"})
    assert response.status == 400
    response = await client.post(f"{base}/close", data={"csrf": token, "outcome": "gone"})
    assert response.status == 400
    response = await client.post(
        f"{base}/attempt", data={"csrf": token, "connected": "yes", "note": "会员已回购"}
    )
    response = await client.post(
        f"{base}/close", data={"csrf": token, "outcome": "resolved", "note": "已解决"}
    )
    assert response.status == 200
    page = await (await client.get("/console/follow-ups?status=closed&mine=1")).text()
    assert "已解决" in page
    # 1 of 2 attempts connected this month; the call was overdue, so not completed in time.
    assert "50.0%" in await (await client.get("/console/follow-ups")).text()
    assert (
        await client.post(f"{base}/close", data={"csrf": token, "outcome": "resolved"})
    ).status == 409
    assert [a for a in await actions(client) if a.startswith("follow_up")] == [
        "follow_up_assign",
        "follow_up_attempt",
        "follow_up_attempt",
        "follow_up_close",
    ]


async def test_another_agents_call_is_not_yours_but_an_admin_reassigns_it(
    console: TestClient,
) -> None:
    client = console
    call = await add_call(client, await add_member(client))
    await add_staff(client, "agent_li", "agent")
    await add_staff(client, "agent_wang", "agent")
    await add_staff(client, "boss", "admin")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client, "/console/follow-ups")
    base = f"/console/follow-ups/{call}"
    await client.post(f"{base}/attempt", data={"csrf": token, "connected": "no"})  # now Li's
    assert await login(client, "agent_wang") == 303
    token = await csrf_of(client, "/console/follow-ups")
    assert "138****5678" in await (await client.get(base)).text()
    response = await client.post(f"{base}/attempt", data={"csrf": token, "connected": "yes"})
    assert response.status == 409
    response = await client.post(f"{base}/assign", data={"csrf": token, "to": "agent_wang"})
    assert response.status == 409
    assert await login(client, "boss") == 303
    token = await csrf_of(client, "/console/follow-ups")
    assert PHONE in await (await client.get(base)).text()
    response = await client.post(f"{base}/assign", data={"csrf": token, "to": "nobody"})
    assert response.status == 400
    response = await client.post(f"{base}/assign", data={"csrf": token, "to": "agent_wang"})
    assert response.status == 200
    async with client.app[wiring.SESSIONS]() as session:
        follow_up = await session.get_one(FollowUp, call)
        assert follow_up.assigned_to is not None
        attempts = (await session.scalars(select(FollowUpAttempt))).all()
    assert len(attempts) == 1


# Every form of the new pages, with what it needs besides the token.
FORMS = [
    ("/console/follow-ups/{call}/assign", {}),
    ("/console/follow-ups/{call}/attempt", {"connected": "yes"}),
    ("/console/follow-ups/{call}/close", {"outcome": "resolved"}),
    ("/console/members/{member}/compensate", {"what": "coupon", "key": "k" * 20, "reason": "x"}),
    ("/console/canned", {"group": "问候", "text": "您好"}),
    ("/console/canned/{reply}", {"group": "问候", "text": "您好"}),
    ("/console/canned/{reply}/delete", {}),
    ("/console/staff", {"username": "agent_new", "password": "x" * 12, "role": "agent"}),
    ("/console/staff/{staff}/role", {"role": "agent"}),
    ("/console/staff/{staff}/password", {"password": "x" * 12}),
    ("/console/staff/{staff}/disable", {}),
    ("/console/staff/{staff}/enable", {}),
]


async def test_every_new_form_needs_the_csrf_token(console: TestClient) -> None:
    client = console
    member = await add_member(client)
    call = await add_call(client, member)
    await add_staff(client, "boss", "admin")
    staff = await add_staff(client, "agent_li", "agent")
    assert await login(client, "boss") == 303
    page = await (await client.get("/console/canned")).text()  # seeds the defaults
    reply = int(re.findall(r'data-canned-id="(\d+)"', page)[0])
    for path, data in FORMS:
        url = path.format(call=call, member=member, reply=reply, staff=staff)
        for token in ({}, {"csrf": "forged"}):
            response = await client.post(url, data=data | token)
            assert response.status == 403, url
    async with client.app[wiring.SESSIONS]() as session:
        follow_up = await session.get_one(FollowUp, call)
        assert (follow_up.assigned_to, follow_up.status) == (None, "open")
    assert await coupons_of(client, member) == []
    assert await actions(client) == ["login"]  # nothing else happened
    async with client.app[wiring.SESSIONS]() as session:
        li = await session.get_one(Staff, staff)
        assert (li.role, li.disabled) == ("agent", False)
    async with client.app[wiring.SESSIONS]() as session:
        assert len((await session.scalars(select(CannedReply))).all()) == 5


async def add_history(client: TestClient, member_id: int) -> None:
    """An order (points in a lot, a ledger entry, a gold tier), a binding code, a referral of a
    friend, a rating and a conversation."""
    rules = client.app[wiring.CONFIG].programme
    now = utcnow()
    async with client.app[wiring.SESSIONS].begin() as session:
        member = await session.get_one(Member, member_id)
        await record_order(
            session, rules, member, OrderIn("SO-2026-0001", member_id, 80_000, now, "shop"), now
        )
        session.add(
            BindingCode(
                code="BINDME42", member_id=member_id, created_at=now, expires_at=now + timedelta(1)
            )
        )
        friend = Member(openid="o_cs_tools_friend", name="李雷", subscribed=True, created_at=now)
        session.add(friend)
        await session.flush()
        session.add(
            Referral(
                referrer_id=member_id,
                referee_id=friend.id,
                code="REF1",
                source="scan",
                status="joined",
                attributed_at=now,
            )
        )
        session.add(
            Rating(
                question_id="q-card-1",
                member_id=member_id,
                kind="csat",
                score=2,
                comment="发货太慢",
                context="order",
                tier="gold",
                asked_at=now,
                answered_at=now,
            )
        )
        session.add(
            Conversation(
                member_id=member_id,
                status="closed",
                reason="asked",
                queued_at=now,
                last_activity_at=now,
            )
        )


@pytest.mark.parametrize("role", ["agent", "admin"])
async def test_a_member_is_found_by_every_key_and_the_phone_as_the_role_may(
    console: TestClient, role: str
) -> None:
    client = console
    member = await add_member(client)
    await add_member(client, "o_cs_tools_other", name="赵六", phone="13900001111")
    await add_history(client, member)
    await add_staff(client, "someone", role)
    assert await login(client, "someone") == 303

    async def found(query: str) -> list[str]:
        page = await (await client.get("/console/members", params={"q": query})).text()
        return re.findall(r'data-member="(\d+)"', page)

    for query in ("o_cs_tools_anna", "王芳", "王", "5678", "bindme42", "SO-2026-0001"):
        assert await found(query) == [str(member)], query
    assert await found("%") == []  # LIKE's wildcards are text
    page = await (await client.get("/console/members", params={"q": "5678"})).text()
    if role == "agent":
        assert "138****5678" in page
        assert PHONE not in page
        assert "o_cs_tools_anna" not in page  # the openid is masked too
        assert await found(PHONE) == []  # the whole number is for admins
    else:
        assert PHONE in page
        assert await found(PHONE) == [str(member)]
    response = await client.get("/console/members", params={"q": "x" * 65})
    assert response.status == 400


async def test_the_member_card_shows_the_members_history(console: TestClient) -> None:
    client = console
    member = await add_member(client)
    await add_history(client, member)
    await add_call(client, member)
    await add_staff(client, "agent_li", "agent")
    async with client.app[wiring.SESSIONS].begin() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.member_id == member)
        )
        agent = await session.scalar(select(Staff).where(Staff.username == "agent_li"))
        assert conversation is not None
        assert agent is not None
        now = utcnow()
        opened = await open_case(
            session, conversation, agent.id, "logistics", "", now + timedelta(hours=24), now
        )
        assert opened is not None
    assert await login(client, "agent_li") == 303
    page = await (await client.get(f"/console/members/{member}")).text()
    cases = re.search(r'<ul id="member-cases">.*?</ul>', page, re.S)
    assert cases
    assert f"#{opened.id}" in cases[0]
    assert "物流" in cases[0]
    for shown in ("王芳", "138****5678", "SO-2026-0001", "李雷", "发货太慢", "流失风险回访"):
        assert shown in page, shown
    assert PHONE not in page
    lots = re.search(r'<table id="lots">.*?</table>', page, re.S)
    assert lots
    assert "1200" in lots[0]  # ¥800 at gold's 1.5 multiplier
    assert "#" in re.search(r'<ul id="conversations">.*?</ul>', page, re.S)[0]  # type: ignore[index]
    assert (await client.get("/console/members/999999")).status == 404


async def compensate(
    client: TestClient, member: int, token: str, key: str, **form: str
) -> tuple[int, str]:
    response = await client.post(
        f"/console/members/{member}/compensate",
        data={"csrf": token, "key": key, "reason": "物流延误"} | form,
    )
    return response.status, await response.text()


async def coupons_of(client: TestClient, member: int) -> list[Coupon]:
    async with client.app[wiring.SESSIONS]() as session:
        return list((await session.scalars(select(Coupon).where(Coupon.member_id == member))).all())


async def test_compensation_within_the_daily_limits_once_per_form(console: TestClient) -> None:
    client = console
    member = await add_member(client)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client, f"/console/members/{member}")
    # The same form twice (a double click, a resend): one coupon.
    for _ in range(2):
        status, page = await compensate(client, member, token, "k" * 20, what="coupon")
        assert status == 200
    assert "未重复发放" in page
    assert [c.kind for c in await coupons_of(client, member)] == ["cash_10"]
    for n in (2, 3):
        assert (await compensate(client, member, token, f"{'k' * 20}{n}", what="coupon"))[0] == 200
    status, page = await compensate(client, member, token, "k" * 20 + "4", what="coupon")
    assert status == 409
    assert "已达今日补偿上限（补偿券）" in page
    assert len(await coupons_of(client, member)) == 3
    # Points: 300 given, 200 taken back; 1 more passes the day's 500.
    assert (await compensate(client, member, token, "p" * 20, points="300"))[0] == 200
    assert (await compensate(client, member, token, "p" * 20, points="300"))[0] == 200
    assert (await compensate(client, member, token, "q" * 20, points="-200"))[0] == 200
    status, page = await compensate(client, member, token, "r" * 20, points="1")
    assert status == 409
    assert "积分" in page
    async with client.app[wiring.SESSIONS]() as session:
        balance = (await session.get_one(Member, member)).points_balance
        reasons = (await session.scalars(select(LedgerEntry.reason).order_by(LedgerEntry.id))).all()
    assert balance == 100
    assert reasons == ["客服补偿", "积分更正"]  # what the member reads; the staff's reason is ours
    for key, bad in (
        ("s" * 20, {"points": "0"}),
        ("s" * 20, {"points": "x"}),
        ("s" * 20, {"points": "5", "reason": ""}),
        ("short", {"points": "5"}),
    ):
        status, _ = await compensate(client, member, token, key, **bad)
        assert status == 400, bad
    assert [a for a in await actions(client) if a.startswith("compensate")] == [
        "compensate_coupon",
        "compensate_coupon",
        "compensate_coupon",
        "compensate_points",
        "compensate_points",
    ]


async def test_an_admin_has_no_limit_and_a_short_balance_takes_nothing(
    console: TestClient,
) -> None:
    client = console
    member = await add_member(client)
    await add_staff(client, "boss", "admin")
    assert await login(client, "boss") == 303
    token = await csrf_of(client, f"/console/members/{member}")
    for n in range(5):
        assert (await compensate(client, member, token, f"{'a' * 20}{n}", what="coupon"))[0] == 200
    assert (await compensate(client, member, token, "b" * 20, points="5000"))[0] == 200
    status, page = await compensate(client, member, token, "c" * 20, points="-6000")
    assert status == 409
    assert "积分不足" in page
    assert len(await coupons_of(client, member)) == 5


async def test_a_marketer_cannot_compensate_even_if_configured_for_agents_only(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory(
        console={"compensation": {"coupon_kind": "cash_10", "limits": {"admin": {}}}}
    )
    member = await add_member(client)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    token = await csrf_of(client, f"/console/members/{member}")
    page = await (await client.get(f"/console/members/{member}")).text()
    assert 'id="compensation"' not in page  # agents are not in this brand's limits
    assert (await compensate(client, member, token, "k" * 20, what="coupon"))[0] == 403
    assert await coupons_of(client, member) == []


async def test_admins_edit_canned_replies_and_agents_get_them_filled_in(
    console: TestClient,
) -> None:
    client = console
    await follower(client, CHATTER)
    await say(client, "人工", CHATTER)
    async with client.app[wiring.SESSIONS].begin() as session:
        await session.execute(
            update(Member).where(Member.openid == CHATTER).values(name="王芳", tier="gold")
        )
    await add_staff(client, "boss", "admin")
    assert await login(client, "boss") == 303
    token = await csrf_of(client, "/console/canned")
    page = await (await client.get("/console/canned")).text()
    assert "处理结果会在24小时内通知您" in page  # today's defaults, on first use
    for text, error in (
        ("{name}您好，{phone}已登记", "不认识的占位符：{phone}"),
        ("{name您好", "花括号不成对"),
    ):
        response = await client.post(
            "/console/canned", data={"csrf": token, "group": "问候", "text": text}
        )
        assert response.status == 400
        assert error in await response.text()
    response = await client.post(
        "/console/canned",
        data={
            "csrf": token,
            "group": "问候",
            "text": "{name}您好，{tier}专属客服为您服务",
            "position": "0",
        },
    )
    assert response.status == 200
    async with client.app[wiring.SESSIONS]() as session:
        replies = (await session.scalars(select(CannedReply).order_by(CannedReply.id))).all()
    assert len(replies) == 6
    old = replies[1]  # "请您提供一下订单号…"
    response = await client.post(
        f"/console/canned/{old.id}",
        data={"csrf": token, "group": "订单", "text": "{name}，请提供订单号", "position": "1"},
    )
    assert response.status == 200
    response = await client.post(f"/console/canned/{replies[4].id}/delete", data={"csrf": token})
    assert response.status == 200
    bad = await client.post(
        f"/console/canned/{old.id}", data={"csrf": token, "group": "订单", "text": "{x}"}
    )
    assert bad.status == 400

    conversation = await conversation_of(client, CHATTER)
    await add_staff(client, "agent_li", "agent")
    assert await login(client, "agent_li") == 303
    agent_token = await csrf_of(client)
    base = f"/console/conversations/{conversation.id}"
    assert (await client.post(f"{base}/claim", data={"csrf": agent_token})).status == 200
    page = await (await client.get(base)).text()
    assert 'data-canned="王芳您好，金卡会员专属客服为您服务"' in page
    assert 'data-canned="王芳，请提供订单号"' in page
    assert "感谢您的耐心等待" not in page
    assert (await client.get("/console/canned", allow_redirects=False)).status == 403
    assert [a for a in await actions(client) if a.startswith("canned")] == [
        "canned_add",
        "canned_edit",
        "canned_delete",
    ]


async def test_admins_manage_staff_accounts_with_the_command_lines_rules(
    console: TestClient,
) -> None:
    client = console
    boss = await add_staff(client, "boss", "admin")
    assert await login(client, "boss") == 303
    token = await csrf_of(client, "/console/staff")

    async def post(path: str, **form: str) -> tuple[int, str]:
        response = await client.post(f"/console/staff{path}", data={"csrf": token} | form)
        return response.status, await response.text()

    for form, error in (
        ({"username": "Zhang San", "password": PASSWORD, "role": "agent"}, "用户名需为"),
        ({"username": "agent_zhang", "password": "short", "role": "agent"}, "至少需要10个字符"),
        ({"username": "agent_zhang", "password": PASSWORD, "role": "owner"}, "请选择角色"),
        ({"username": "boss", "password": PASSWORD, "role": "agent"}, "已存在"),
    ):
        status, page = await post("", **form)
        assert (status, error in page) == (400, True), form
    assert (await post("", username="agent_zhang", password=PASSWORD, role="agent"))[0] == 200
    async with client.app[wiring.SESSIONS]() as session:
        zhang = await find_staff(session, "agent_zhang")
    assert zhang is not None
    # Zhang is signed in somewhere; becoming a marketer ends that session.
    sessions = client.app[SESSIONS]
    zhang_token, _ = await sessions.start(zhang.id, "agent_zhang", "agent")
    assert (await post(f"/{zhang.id}/role", role="marketer"))[0] == 200
    assert await sessions.load(zhang_token) is None
    assert (await post(f"/{zhang.id}/password", password="short"))[0] == 400
    assert (await post(f"/{zhang.id}/password", password="another long password"))[0] == 200
    assert (await post(f"/{zhang.id}/disable"))[0] == 200
    assert await login(client, "agent_zhang", "another long password") == 401
    assert await login(client, "boss") == 303
    token = await csrf_of(client, "/console/staff")
    assert (await post(f"/{zhang.id}/enable"))[0] == 200
    assert await login(client, "agent_zhang", "another long password") == 303
    assert await login(client, "boss") == 303
    token = await csrf_of(client, "/console/staff")
    # The only admin can neither step down nor switch themselves off.
    for path, form in ((f"/{boss}/role", {"role": "agent"}), (f"/{boss}/disable", {})):
        status, page = await post(path, **form)
        assert (status, "至少需要保留一个启用的管理员" in page) == (409, True)
    assert (await post("/999999/disable"))[0] == 404
    assert (await post(f"/{zhang.id}/role", role="admin"))[0] == 200
    response = await client.post(
        f"/console/staff/{boss}/role", data={"csrf": token, "role": "agent"}, allow_redirects=False
    )
    assert response.headers["Location"] == "/console/login"  # their own session ended
    assert [a for a in await actions(client) if a.startswith("staff")] == [
        "staff_add",
        "staff_role",
        "staff_password",
        "staff_disable",
        "staff_enable",
        "staff_role",
        "staff_role",
    ]
