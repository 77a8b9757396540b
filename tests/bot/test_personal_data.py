"""PIPL: a member's data exported whole, then erased with the books still balancing."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot import wiring
from models.conversations import ConversationMessage
from models.members import Member
from models.misses import ChatMiss, ChatMissText
from models.ratings import OpenQuestion, Rating
from models.staff import AuditEntry
from tests.bot.api.test_api import call, follower, order
from tests.helpers import PLAIN, bot_config, push, run_bot

OPENID = "o_pipl_member01"
PHONE = "13812345678"


async def test_export_then_erase(
    client: TestClient, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    await follower(client, OPENID)
    profile = {"name": "王小明", "phone": PHONE, "birthday": "1990-05-01", "tags": ["vip"]}
    assert (await call(client, "PUT", f"/members/{OPENID}", profile))[0] == 200
    assert (await call(client, "POST", "/orders", order("P-1", OPENID, 50_000)))[0] == 201
    await push(client, PLAIN, PLAIN.text(OPENID, "人工"))
    await push(client, PLAIN, PLAIN.text(OPENID, "我的地址是北京市朝阳区"))
    await push(client, PLAIN, PLAIN.text(OPENID, "结束"))
    store = client.app[wiring.SERVICES].questions
    await store.open(OPENID, OpenQuestion("q:pipl", "csat", "order", "P-1", 1.0))
    await push(client, PLAIN, PLAIN.text(OPENID, "5 快递员电话13900001111"))
    await push(client, PLAIN, PLAIN.text(OPENID, "我的咖啡豆 手机13900002222"))  # not understood
    config = bot_config(tmp_path, db_url, redis_url)

    code, out, _ = await run_bot(config, "member", "export", OPENID)
    assert code == 0
    data = json.loads(out)
    assert data["member"]["phone"] == PHONE
    assert data["member"]["name"] == "王小明"
    assert [o["shop_order_id"] for o in data["orders"]] == ["P-1"]
    assert len(data["ledger_entries"]) == 1
    assert any("朝阳区" in m["content"] for m in data["conversation_messages"])
    assert data["ratings"][0]["comment"] == "快递员电话13900001111"
    assert [t["text"] for t in data["chat_miss_texts"]] == ["我的咖啡豆 手机13900002222"]

    code, _, err = await run_bot(config, "member", "erase", OPENID)
    assert code == 2
    assert "--yes" in err
    assert await client.app[wiring.REDIS].get(f"member:id:{OPENID}") is not None  # cached
    code, out, _ = await run_bot(config, "member", "erase", OPENID, "--yes")
    assert code == 0, out
    async with client.app[wiring.SESSIONS]() as session:
        member = await session.get_one(Member, data["member"]["id"])
        texts = (await session.scalars(select(ConversationMessage.content))).all()
        comments = (await session.scalars(select(Rating.comment))).all()
        actions = (await session.scalars(select(AuditEntry.action))).all()
        kept = (await session.scalars(select(ChatMissText.text))).all()
        phrasings = (await session.scalars(select(ChatMiss.phrasing))).all()
    assert (member.openid, member.name, member.phone, member.birthday) == (None, None, None, None)
    assert member.tags == []
    assert member.points_balance == data["member"]["points_balance"]  # the books keep
    assert not any("朝阳区" in t for t in texts)
    assert comments == [None]
    assert kept == []  # the member's own words are gone; the masked phrasing stays counted
    assert phrasings == ["我的咖啡豆 手机#"]
    assert {"member_export", "member_erase"} <= set(actions)
    assert await client.app[wiring.REDIS].get(f"member:id:{OPENID}") is None
    code, out, _ = await run_bot(config, "ledger", "verify")
    assert code == 0
    assert "every balance matches" in out
    # Nothing is left under the openid: following again starts a new member.
    await follower(client, OPENID)
    async with client.app[wiring.SESSIONS]() as session:
        fresh = await session.scalar(select(Member).where(Member.openid == OPENID))
    assert fresh is not None
    assert fresh.id != data["member"]["id"]
    assert fresh.points_balance == 0
    code, _, err = await run_bot(config, "member", "export", "o_nobody_at_all")
    assert code == 2
    assert "no member" in err
