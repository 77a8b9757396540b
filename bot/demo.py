"""Demo data for a first ``make run``: a believable brand whose programme is at work.

Ten members to chat as (``o_demo_member_01`` … ``_10``), whose orders go through the same
domain function as the API, so their points, lots and tiers are real; and a brand of a few
thousand more (``demo --members N``) with 18 months of history, loaded set-based (bulk
INSERTs, not the per-order path): orders in several channels and categories (some refunded),
points earned, spent and expired as ledger entries and lots that balance, tiers and segments
computed by the real jobs, ratings with comments, referrals at every stage, a finished
win-back campaign with its holdout, coupons issued and redeemed, pushes, and a few
conversations waiting for an agent. Everything derives from one seeded random generator, so
two loads look the same.

It loads only into a database without members: never next to real ones.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.order_intake import take_order
from models.base import utcnow
from models.binding import BindingCode
from models.campaigns import Campaign, CampaignMember, CampaignRun
from models.conversations import Conversation, ConversationMessage
from models.coupons import Coupon
from models.deliveries import Delivery
from models.events import MemberEvent
from models.ledger import LedgerEntry, PointLot
from models.members import Member, count_members, record_subscribe
from models.orders import Order, OrderIn, lot_expiry
from models.ratings import Rating
from models.referrals import Referral, ReferralLink
from models.rules import ProgrammeRules
from models.segments import refresh_segments
from models.tier_review import reevaluate_tiers

DEMO_OPENIDS = [f"o_demo_member_{n:02d}" for n in range(1, 11)]
# Orders per demo member (¥ amounts), so the first few sit at different tiers and progress.
DEMO_ORDERS_YUAN = [
    [128, 256, 399, 88, 520, 199, 699, 1288, 99, 350, 460, 880],
    [299, 150, 620, 90, 480],
    [88, 168],
    [1999],
]
DEFAULT_MEMBERS = 3000
HISTORY_DAYS = 548  # 18 months
SEED = 20261206

CHANNELS = [("wechat_mall", 40), ("store", 35), ("tmall", 15), ("jd", 10)]
# Category: (weight, typical ¥ amount)
CATEGORIES = {
    "护肤": (35, 380),
    "彩妆": (25, 220),
    "香氛": (12, 520),
    "个护": (18, 120),
    "礼盒": (10, 680),
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾"
    "肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
)
GIVEN = (
    "伟芳娜敏静丽强磊洋艳勇军杰娟涛明超秀霞平刚桂英华玉萍红玲峰"
    "琳晶欣怡婷雪梅琪慧颖佳悦晨浩宇思雨嘉子涵"
)
COMMENTS = {
    5: ["包装很用心，下次还来", "客服回复很快，满意", "生日礼券很惊喜", "质量很好，回购了"],
    4: ["整体不错，物流再快点就好", "味道很喜欢", "会员价挺划算"],
    3: ["一般般", "赠品少了点"],
    2: ["发货太慢了", "门店排队时间长"],
    1: ["退款处理太慢", "收到的商品有破损"],
}
# (persona, share of members, orders over 18 months, days since the last order at least)
PERSONAS = [
    ("loyal", 0.10, (12, 30), 0),
    ("regular", 0.30, (4, 10), 0),
    ("occasional", 0.32, (1, 3), 0),
    ("lapsing", 0.16, (3, 7), 70),
    ("one_off", 0.12, (1, 1), 100),
]


class DemoRefused(Exception):
    """The database has members already: the demo never loads next to real ones."""


@dataclass
class _Brand:
    """What the bulk loader has made so far, kept to connect the next tables."""

    rules: ProgrammeRules
    now: datetime
    rng: random.Random
    members: list[dict[str, Any]] = field(default_factory=list)
    # The win-back campaign's run: who it targeted (variant or holdout) is decided with the
    # members, so the orders it brought back are part of their history.
    campaign_start: datetime = field(init=False)
    orders: dict[int, list[tuple[int, datetime, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.campaign_start = self.now - timedelta(days=25)


async def load_demo(
    sessions: async_sessionmaker[AsyncSession],
    rules: ProgrammeRules,
    if_empty: bool,
    members: int = DEFAULT_MEMBERS,
) -> int:
    """Load the ten chat members and ``members`` more; returns how many members were loaded.

    Only into a database without members: with ``if_empty`` a database with members is left
    alone (0), without it DemoRefused says why."""
    async with sessions() as session:
        existing = await count_members(session)
    if existing:
        if if_empty:
            return 0
        raise DemoRefused(
            f"the database has {existing} members; the demo loads only into an empty one"
        )
    now = utcnow()
    await _chat_members(sessions, rules, now)
    brand = _Brand(rules, now, random.Random(SEED))
    async with sessions() as session:
        await _members(session, brand, members)
        await _orders_and_points(session, brand)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            # Fresh statistics, or the planner takes the bulk-loaded tables for empty ones and
            # the segment refresh runs for minutes.
            await session.execute(text("ANALYZE"))
        await session.commit()
        await reevaluate_tiers(session, rules, now)  # commits
        await refresh_segments(session, rules, now)  # commits
    async with sessions.begin() as session:
        await _programme_at_work(session, brand)
        # The demo's history is history: its events are not news to push or send to shops.
        await session.execute(update(MemberEvent).values(processed_at=now, hooked_at=now))
    return len(DEMO_OPENIDS) + members


async def _chat_members(
    sessions: async_sessionmaker[AsyncSession], rules: ProgrammeRules, now: datetime
) -> None:
    """The ten members the README chats as, their orders through the API's domain function."""
    async with sessions() as session:
        for index, openid in enumerate(DEMO_OPENIDS):
            member = await record_subscribe(session, openid, now - timedelta(days=30 * index))
            amounts = DEMO_ORDERS_YUAN[index] if index < len(DEMO_ORDERS_YUAN) else []
            for number, yuan in enumerate(amounts):
                paid_at = now - timedelta(days=25 * (len(amounts) - number))
                await take_order(
                    session,
                    rules,
                    member,
                    OrderIn(
                        shop_order_id=f"DEMO-{index + 1:02d}-{number + 1:02d}",
                        member_id=member.id,
                        amount_fen=yuan * 100,
                        paid_at=paid_at,
                        channel="demo",
                    ),
                    now,
                )
        await session.commit()


def _pick(rng: random.Random, weighted: list[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


def _birthday(rng: random.Random) -> date | None:
    if rng.random() < 0.12:
        return None
    if rng.random() < 0.005:
        return date(rng.choice([1988, 1992, 1996, 2000]), 2, 29)
    start = date(1965, 1, 1).toordinal()
    return date.fromordinal(rng.randint(start, date(2004, 12, 31).toordinal()))


async def _insert(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk INSERT of Core rows (one executemany, none of the ORM's per-row work), returning
    the new ids in the rows' order."""
    if not rows:
        return []
    table = model.__table__
    connection = await session.connection()
    result = await connection.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
    )
    return [row[0] for row in result]


async def _insert_plain(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """Bulk INSERT of Core rows, nothing returned."""
    if rows:
        await (await session.connection()).execute(insert(model.__table__), rows)


async def _members(session: AsyncSession, brand: _Brand, count: int) -> None:
    rng, now = brand.rng, brand.now
    rows = []
    for n in range(count):
        joined = now - timedelta(days=rng.uniform(5, 760), minutes=rng.randint(0, 1440))
        left = rng.random() < 0.07
        name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice([1, 2])))
        rows.append(
            {
                "openid": f"o_demo_{n:06d}",
                "customer_ref": f"DEMO-C{n:06d}" if rng.random() < 0.6 else None,
                "name": name,
                "phone": f"1{rng.choice('3578')}{rng.randint(0, 999_999_999):09d}",
                "birthday": _birthday(rng),
                "tags": ["vip"] if rng.random() < 0.05 else [],
                "points_balance": 0,
                "tier": "basic",
                "subscribed": not left,
                "subscribed_at": joined,
                "unsubscribed_at": joined + (now - joined) * rng.random() if left else None,
                "last_interaction_at": joined,
                "created_at": joined,
            }
        )
    ids = await _insert(session, Member, rows)
    for member_id, row in zip(ids, rows, strict=True):
        row["id"] = member_id
        persona = rng.choices(PERSONAS, [p[1] for p in PERSONAS])[0]
        row["persona"] = persona
        lapsed = persona[0] in ("lapsing", "one_off")
        long_enough = row["created_at"] < brand.campaign_start - timedelta(days=100)
        row["campaign"] = None
        if lapsed and long_enough:
            row["campaign"] = "holdout" if rng.random() < 0.1 else rng.choice("AB")
    brand.members = rows


def _order_times(brand: _Brand, member: dict[str, Any]) -> list[datetime]:
    rng, now = brand.rng, brand.now
    _, _, (low, high), idle = member["persona"]
    first = max(member["created_at"], now - timedelta(days=HISTORY_DAYS))
    last = now - timedelta(days=idle, hours=1)
    if last <= first:
        return []
    span = (last - first).total_seconds()
    # Members who joined lately have had less time to buy.
    count = max(1, round(rng.randint(low, high) * min(1.0, span / (HISTORY_DAYS * 86400))))
    times = [first + timedelta(seconds=rng.uniform(0, span)) for _ in range(count)]
    # The campaign brings some back within its 14 days; fewer of the holdout return alone.
    variant = member["campaign"]
    if variant is not None and rng.random() < (0.05 if variant == "holdout" else 0.16):
        times.append(brand.campaign_start + timedelta(days=rng.uniform(0.2, 13.5)))
    return sorted(times)


async def _orders_and_points(session: AsyncSession, brand: _Brand) -> None:
    """Orders (a few refunded), and for each purchase an earn entry and its lot; lots past
    their expiry are expired, and some members spent their oldest points: balance == entries
    == lots, as ``ledger verify`` checks."""
    rng, rules, now = brand.rng, brand.rules, brand.now
    rows: list[dict[str, Any]] = []
    for member in brand.members:
        for number, paid_at in enumerate(_order_times(brand, member)):
            category = _pick(rng, [(k, w) for k, (w, _) in CATEGORIES.items()])
            typical = CATEGORIES[category][1]
            amount = max(1_000, round(rng.lognormvariate(0, 0.45) * typical) * 100)
            refund = rng.random()
            refunded = amount if refund < 0.04 else (amount // 4 if refund < 0.07 else 0)
            rows.append(
                {
                    "shop_order_id": f"DEMO-{member['id']}-{number + 1:03d}",
                    "member_id": member["id"],
                    "amount_fen": amount,
                    "refunded_fen": refunded,
                    "paid_at": paid_at,
                    "channel": _pick(rng, CHANNELS),
                    "category": category,
                    "points_earned": (amount - refunded) // 100,
                    "points_reversed": 0,
                    "fingerprint": f"demo-{member['id']}-{number}",
                    "created_at": paid_at,
                }
            )
    ids = await _insert(session, Order, rows)
    lots_by_member: dict[int, list[dict[str, Any]]] = defaultdict(list)
    entries: list[dict[str, Any]] = []
    for order_id, order in zip(ids, rows, strict=True):
        brand.orders.setdefault(order["member_id"], []).append(
            (order_id, order["paid_at"], order["amount_fen"] - order["refunded_fen"])
        )
        points = order["points_earned"]
        if points <= 0:
            continue
        entries.append(_entry(order["member_id"], "earn", points, order["paid_at"], order_id))
        lots_by_member[order["member_id"]].append(
            {
                "member_id": order["member_id"],
                "order_id": order_id,
                "amount": points,
                "remaining": points,
                "earned_at": order["paid_at"],
                "expires_at": lot_expiry(rules, order["paid_at"]),
                "expired_points": 0,
                "expired_at": None,
            }
        )
    entry_ids = await _insert(session, LedgerEntry, entries)
    lots: list[dict[str, Any]] = []
    for entry_id, entry in zip(entry_ids, entries, strict=True):
        lot = lots_by_member[entry["member_id"]][0]
        # Entries were made in the lots' order per member: pair them up again.
        lots_by_member[entry["member_id"]].pop(0)
        lots.append({**lot, "entry_id": entry_id})
    later: list[dict[str, Any]] = []
    for lot in lots:
        if lot["expires_at"] <= now:
            lot.update(remaining=0, expired_points=lot["amount"], expired_at=lot["expires_at"])
            later.append(_entry(lot["member_id"], "expire", -lot["amount"], lot["expires_at"]))
    spenders = {m["id"] for m in brand.members if rng.random() < 0.35}
    for lot in lots:
        if lot["member_id"] in spenders and lot["remaining"] > 0:
            spenders.discard(lot["member_id"])  # their oldest open lot, once
            spent_at = lot["earned_at"] + (now - lot["earned_at"]) * rng.uniform(0.2, 0.9)
            later.append(_entry(lot["member_id"], "redeem", -lot["remaining"], spent_at))
            lot["remaining"] = 0
    await _insert_plain(session, PointLot, lots)
    await _insert(session, LedgerEntry, later)
    balances: dict[int, int] = defaultdict(int)
    for lot in lots:
        balances[lot["member_id"]] += lot["remaining"]
    if not any(balances.values()):
        return
    await session.execute(
        update(Member.__table__)
        .where(Member.__table__.c.id == bindparam("b_id"))
        .values(points_balance=bindparam("b_balance")),
        [{"b_id": k, "b_balance": v} for k, v in balances.items() if v],
    )


_serial = itertools.count(1)


def _entry(
    member_id: int, kind: str, points: int, at: datetime, order_id: int | None = None
) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "kind": kind,
        "points": points,
        # A running balance is not kept for history loaded in bulk; verify checks the sums.
        "balance_after": 0,
        "reason": f"demo:{kind}",
        "idempotency_key": f"demo:{kind}:{member_id}:{next(_serial)}",
        "order_id": order_id,
        "created_at": at,
    }


async def _programme_at_work(session: AsyncSession, brand: _Brand) -> None:
    """Everything the figures and the console show besides orders and points."""
    rows = await session.execute(
        select(Member.id, Member.tier, Member.segment, Member.birthday, Member.created_at).where(
            Member.openid.like("o_demo_0%")
        )
    )
    people = [dict(r._mapping) for r in rows]
    await _ratings(session, brand, people)
    await _referrals(session, brand, people)
    await _coupons(session, brand, people)
    await _campaign_and_pushes(session, brand, people)
    await _conversations(session, brand, people)
    await _bindings(session, brand, people)


def _within(brand: _Brand, days: float) -> datetime:
    return brand.now - timedelta(days=brand.rng.uniform(0.5, days))


async def _ratings(session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]) -> None:
    rng, rows = brand.rng, []
    for person in people:
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            nps = rng.random() < 0.3
            if nps:
                score = rng.choices(range(11), [1, 1, 1, 1, 2, 3, 4, 8, 14, 30, 35])[0]
            else:
                score = rng.choices([1, 2, 3, 4, 5], [2, 3, 6, 27, 62])[0]
            stars = min(5, max(1, round(score / 2))) if nps else score
            answered = _within(brand, 360)
            rows.append(
                {
                    "question_id": f"demo:{person['id']}:{next(_serial)}",
                    "member_id": person["id"],
                    "kind": "nps" if nps else "csat",
                    "score": score,
                    "comment": rng.choice(COMMENTS[stars]) if rng.random() < 0.45 else None,
                    "context": "sample" if nps else "order",
                    "tier": person["tier"],
                    "segment": person["segment"],
                    "asked_at": answered - timedelta(hours=2),
                    "answered_at": answered,
                }
            )
    await _insert(session, Rating, rows)


async def _referrals(session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]) -> None:
    """Newer members referred by older ones, at every stage."""
    rng = brand.rng
    ordered = sorted(people, key=lambda p: p["created_at"])
    referrers = ordered[: len(ordered) // 3]
    newcomers = rng.sample(ordered[len(ordered) // 3 :], k=min(len(ordered) // 12, 400))
    links = rng.sample(referrers, k=min(len(referrers), max(1, len(newcomers) // 2)))
    await _insert_plain(
        session,
        ReferralLink,
        [
            {
                "member_id": p["id"],
                "code": f"D{p['id']:07d}"[-8:],
                "created_at": p["created_at"] + timedelta(days=1),
            }
            for p in links
        ],
    )
    rows = []
    for newcomer in newcomers:
        referrer = rng.choice(links)
        first = min(brand.orders.get(newcomer["id"], []), key=lambda o: o[1], default=None)
        if first is None:
            status, first_id, due = "joined", None, None
        else:
            due = first[1] + timedelta(days=brand.rules.referrals.return_window_days)
            status = "pending" if due > brand.now else rng.choice(["rewarded"] * 9 + ["cancelled"])
            first_id = first[0]
        rows.append(
            {
                "referrer_id": referrer["id"],
                "referee_id": newcomer["id"],
                "code": f"D{referrer['id']:07d}"[-8:],
                "source": "subscribe",
                "status": status,
                "attributed_at": newcomer["created_at"],
                "first_order_id": first_id,
                "reward_due_at": due,
                "rewarded_at": due if status == "rewarded" else None,
                # Rewards shown as recorded; the demo's ledger holds order points only.
                "referrer_points": 0,
                "newcomer_points": 0,
            }
        )
    await _insert(session, Referral, rows)


async def _coupons(session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]) -> None:
    """Birthday coupons over the last year, win-back coupons and monthly tier coupons; about
    half redeemed at a till, the rest expired or still valid."""
    rng, now, rows = brand.rng, brand.now, []
    for person in people:
        issued: list[tuple[str, datetime, str]] = []
        if person["birthday"] is not None:
            day = person["birthday"]
            for year in (now.year - 1, now.year):
                at = datetime(year, day.month, min(day.day, 28), 9, tzinfo=brand.rules.zone)
                if person["created_at"] < at < now:
                    issued.append(("birthday_gift", at, "生日礼"))
        if person["segment"] in ("at_risk", "dormant") and rng.random() < 0.6:
            kind = "full_300_50" if person["segment"] == "at_risk" else "cash_10"
            issued.append((kind, _within(brand, 60), "winback"))
        if rng.random() < 0.15:
            issued.append(("tier_discount_95", _within(brand, 200), "会员月度券"))
        for kind, at, reason in issued:
            valid_until = at + timedelta(days=30)
            used_at = at + (min(valid_until, now) - at) * rng.uniform(0.1, 0.9)
            redeemed = (used_at,) if rng.random() < 0.55 else None
            status = "redeemed" if redeemed else ("expired" if valid_until <= now else "issued")
            rows.append(
                {
                    "code": f"DEMO{next(_serial):08d}",
                    "member_id": person["id"],
                    "kind": kind,
                    "status": status,
                    "reason": reason,
                    "idempotency_key": f"demo:coupon:{next(_serial)}",
                    "issued_at": at,
                    "valid_from": at,
                    "valid_until": valid_until,
                    "redeemed_at": redeemed[0] if redeemed else None,
                    "shop_order_id": f"DEMO-{person['id']}-order" if redeemed else None,
                }
            )
    await _insert(session, Coupon, rows)


async def _campaign_and_pushes(
    session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]
) -> None:
    """The finished win-back campaign (A/B, 10% holdout), the monthly win-back offers to the
    members at risk or dormant at the time, and the last weeks' service pushes."""
    rng, now, started = brand.rng, brand.now, brand.campaign_start
    campaign = Campaign(
        name="老客回归礼",
        status="done",
        audience={
            "root": {"all": [{"field": "segment", "op": "in", "value": ["at_risk", "dormant"]}]}
        },
        variants=[
            {"name": "A", "text": "好久不见！回归专享满300减50券已放入您的账户。", "share": 50},
            {"name": "B", "text": "您的专属回归礼：无门槛10元券，本月有效。", "share": 50},
        ],
        holdout_percent=10,
        schedule="now",
        conversion_days=14,
        created_by="demo",
        approved_by="demo",
        created_at=started - timedelta(days=1),
        updated_at=started,
    )
    session.add(campaign)
    await session.flush()
    run = CampaignRun(campaign_id=campaign.id, started_at=started, targeted=0, planned=True)
    session.add(run)
    await session.flush()
    by_id = {p["id"]: p for p in people}
    targeted = [(m, by_id[m["id"]]) for m in brand.members if m["campaign"] and m["id"] in by_id]
    members, deliveries = [], []
    for member, person in targeted:
        variant = member["campaign"]
        members.append({"run_id": run.id, "member_id": person["id"], "variant": variant})
        if variant != "holdout":
            key = f"campaign:{run.id}:{person['id']}"
            deliveries.append(_push(key, "campaign", person, started))
    run.targeted = len(members)
    await _insert_plain(session, CampaignMember, members)
    for months_ago in (1, 2):
        at = now - timedelta(days=30 * months_ago - 3)
        for person in people:
            before = [o[1] for o in brand.orders.get(person["id"], []) if o[1] < at]
            if before and max(before) < at - timedelta(days=60):
                key = f"winback:{at:%Y-%m}:{person['id']}"
                deliveries.append(_push(key, "winback", person, at))
    for purpose, share in (("points_expiring", 0.05), ("nps_sample", 0.05), ("csat_order", 0.08)):
        for person in rng.sample(people, k=int(len(people) * share)):
            key = f"{purpose}:demo:{person['id']}"
            deliveries.append(_push(key, purpose, person, _within(brand, 28)))
    await _insert_plain(session, Delivery, deliveries)


def _push(key: str, purpose: str, person: dict[str, Any], at: datetime) -> dict[str, Any]:
    marketing = purpose in ("campaign", "winback")
    return {
        "dedupe_key": key,
        "purpose": purpose,
        "category": "marketing" if marketing else "service",
        "member_id": person["id"],
        "payload": {},
        "status": "sent",
        "channel": "mass" if marketing else "custom",
        "attempts": 1,
        "not_before": at,
        "created_at": at,
        "updated_at": at,
        "sent_at": at,
    }


async def _conversations(
    session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]
) -> None:
    """A year of closed conversations (most picked up within the hour) and four waiting now,
    one of them overdue."""
    rng, now = brand.rng, brand.now
    chosen = rng.sample(people, k=min(len(people), 4 + len(people) // 20))
    waiting, history = chosen[:4], chosen[4:]
    rows = []
    for person in history:
        queued = _within(brand, 360)
        reply = timedelta(minutes=rng.choice([2, 5, 8, 15, 25, 40, 55, 90, 180]))
        closed = reply + timedelta(hours=rng.choice([0.2, 0.5, 1, 2, 5, 20, 30]))
        rows.append(
            {
                "member_id": person["id"],
                "status": "closed",
                "reason": rng.choice(["asked", "asked", "not_understood", "low_rating"]),
                "queued_at": queued,
                "first_response_at": queued + reply,
                "last_agent_reply_at": queued + reply,
                "last_activity_at": queued + closed,
                "closed_at": queued + closed,
                "outcome": rng.choice(["closed"] * 4 + ["handed_back"]),
            }
        )
    for minutes, person in zip((3, 9, 25, 95), waiting, strict=False):
        queued = now - timedelta(minutes=minutes)
        rows.append(
            {
                "member_id": person["id"],
                "status": "queued",
                "reason": "asked",
                "queued_at": queued,
                "first_response_at": None,
                "last_agent_reply_at": None,
                "last_activity_at": queued,
                "closed_at": None,
                "outcome": None,
            }
        )
    ids = await _insert(session, Conversation, rows)
    texts = ["人工", "我的订单什么时候发货？", "积分怎么兑换？", "生日券在哪里领？"]
    await _insert_plain(
        session,
        ConversationMessage,
        [
            {
                "conversation_id": conversation_id,
                "direction": "in",
                "kind": "text",
                "content": rng.choice(texts),
                "created_at": row["queued_at"],
            }
            for conversation_id, row in zip(ids, rows, strict=True)
        ],
    )


async def _bindings(session: AsyncSession, brand: _Brand, people: list[dict[str, Any]]) -> None:
    """Binding codes used by followers who joined their shop customer record."""
    rows = []
    for person in brand.rng.sample(people, k=len(people) // 10):
        used = person["created_at"] + timedelta(hours=brand.rng.uniform(1, 240))
        if used < brand.now:
            rows.append(
                {
                    "code": f"B{person['id']:07d}"[-8:],
                    "member_id": person["id"],
                    "created_at": used - timedelta(hours=1),
                    "expires_at": used + timedelta(hours=23),
                    "used_at": used,
                }
            )
    if rows:
        await _insert_plain(session, BindingCode, rows)
