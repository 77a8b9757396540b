"""CSV import of members and orders: good rows land, bad rows are reported by line, re-runs
change nothing, and orders earn exactly what the API would credit."""

from __future__ import annotations

import asyncio
import csv
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bot.importer
from bot.importer import ImportFileError, import_members, import_orders
from models.base import utcnow
from models.deliveries import Delivery
from models.events import MemberEvent
from models.ledger import LedgerEntry, PointLot
from models.members import Member, record_subscribe
from models.orders import Order, OrderIn
from models.referrals import Referral, link_for
from models.rules import ProgrammeRules
from models.tiers import TierChange
from tests.conftest import API_TOKEN, APPID, QUIET_BENEFITS, SECRET, TOKEN
from tests.services import STARTUP_SECONDS, child_process

ROOT = Path(__file__).resolve().parents[2]
# As the test configuration has them (tests/conftest.py): the per-order benefit rules quiet.
RULES = ProgrammeRules.model_validate({"benefits": QUIET_BENEFITS})
PAID = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
ORDER_HEADER = ["order_id", "openid", "customer_ref", "amount_fen", "paid_at", "channel"]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def report_of(path: Path) -> list[tuple[int, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["line", "reason"]
    return [(int(line), reason) for line, reason in rows[1:]]


async def add_members(sessions: async_sessionmaker[AsyncSession], **refs: str | None) -> None:
    """Members by openid (keyword) with an optional customer_ref (value)."""
    async with sessions.begin() as session:
        for openid, customer_ref in refs.items():
            session.add(
                Member(openid=openid, customer_ref=customer_ref, created_at=utcnow(), tags=[])
            )


async def member(sessions: async_sessionmaker[AsyncSession], **where: str) -> Member:
    async with sessions() as session:
        return (await session.scalars(select(Member).filter_by(**where))).one()


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Everything an import can change, to compare before and after a re-run."""
    async with sessions() as session:
        members = await session.execute(
            select(
                Member.openid,
                Member.customer_ref,
                Member.name,
                Member.phone,
                Member.birthday,
                Member.tags,
                Member.points_balance,
                Member.tier,
            ).order_by(Member.id)
        )
        counts = {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in (Order, LedgerEntry, PointLot, TierChange, MemberEvent)
        }
        return {"members": [tuple(row) for row in members], **counts}


async def test_members_are_created_and_updated(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with sessions.begin() as session:
        follower = await record_subscribe(session, "o_follower_01", utcnow())
        follower.name, follower.phone = "旧名", "13900000000"
    source = write_csv(
        tmp_path / "members.csv",
        ["openid", "customer_ref", "name", "phone", "birthday", "tags"],
        [
            ["o_new_000001", "", "张三", "+8613800000000", "1990-05-01", "vip; 新客;vip;"],
            ["o_follower_01", "CRM-7", "新名", "", "", ""],
            ["", "CRM-8", "李四", "", "1985-12-31", ""],
        ],
    )
    summary = await import_members(sessions, source)
    assert (summary.imported, summary.unchanged, summary.rejected) == (3, 0, 0)
    assert summary.report == tmp_path / "members.csv.report.csv"
    assert report_of(summary.report) == []

    new = await member(sessions, openid="o_new_000001")
    assert (new.name, new.phone, new.birthday) == ("张三", "+8613800000000", date(1990, 5, 1))
    assert new.tags == ["vip", "新客"]
    assert (new.customer_ref, new.subscribed, new.points_balance, new.tier) == (
        None,
        False,
        0,
        "basic",
    )
    updated = await member(sessions, openid="o_follower_01")
    # Empty cells keep what was stored; the follower stays subscribed and gains its ref.
    assert (updated.name, updated.phone, updated.customer_ref) == ("新名", "13900000000", "CRM-7")
    assert updated.subscribed
    customer = await member(sessions, customer_ref="CRM-8")
    assert (customer.openid, customer.name, customer.birthday) == (None, "李四", date(1985, 12, 31))


async def test_members_by_customer_ref_are_matched_and_can_gain_an_openid(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "customers.csv",
        ["customer_ref", "openid", "name"],
        [["CRM-1", "", "王五"], ["CRM-1", "", "王五"], ["CRM-1", "o_bound_0001", ""]],
    )
    summary = await import_members(sessions, source, batch_size=2)
    # The second row repeats the first, in the same batch: nothing left to change.
    assert (summary.imported, summary.unchanged, summary.rejected) == (2, 1, 0)
    bound = await member(sessions, customer_ref="CRM-1")
    assert (bound.openid, bound.name) == ("o_bound_0001", "王五")


async def test_bad_member_rows_are_reported_by_line_and_good_ones_land(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_members(sessions, o_has_ref_0001="CRM-1", o_other_00001="CRM-2")
    too_many_tags = ";".join(f"t{n}" for n in range(51))
    source = tmp_path / "members.csv"
    source.write_text(
        "openid,customer_ref,name,phone,birthday,tags\n"  # line 1
        "o_good_000001,,好,13800000000,2000-02-29,\n"  # 2
        ",,nobody,,,\n"  # 3
        "o bad id,,,,,\n"  # 4
        "o_phone_00001,,,12ab5,,\n"  # 5
        "o_phone_00002,,,1234,,\n"  # 6
        "o_birth_00001,,,,2001-02-29,\n"  # 7
        "o_birth_00002,,,,20000101,\n"  # 8
        f"o_birth_00003,,,,{date.today() + timedelta(days=1)},\n"  # 9
        "o_birth_00004,,,,1899-12-31,\n"  # 10
        f"o_name_000001,,{'名' * 65},,,\n"  # 11
        f"o_tags_000001,,,,,{too_many_tags}\n"  # 12
        f"o_tags_000002,,,,,{'t' * 33}\n"  # 13
        "o_short_00001,,\n"  # 14
        ",,,,,\n"  # 15: a spreadsheet's empty row, skipped
        "\n"  # 16: blank, skipped
        'o_multi_00001,,"two\n'  # 17
        'lines",,,\n'  # 18
        "o_has_ref_0001,CRM-2,,,,\n"  # 19
        "o_has_ref_0001,CRM-9,,,,\n"  # 20
        "o_new_ref_001,CRM-1,,,,\n"  # 21
        "o_good_000002,,,,1900-01-01,a;b\n",  # 22
        encoding="utf-8",
    )
    report = tmp_path / "elsewhere.csv"
    summary = await import_members(sessions, source, report, batch_size=4)
    assert (summary.imported, summary.unchanged, summary.rejected) == (3, 0, 15)
    assert summary.report == report
    reasons = dict(report_of(report))
    assert list(reasons) == [*range(3, 15), 19, 20, 21]
    assert reasons[3] == "openid or customer_ref: give at least one"
    assert reasons[4].startswith("openid: String should match pattern")
    assert reasons[5].startswith("phone: String should match pattern")
    assert reasons[6].startswith("phone: ")
    assert reasons[7] == reasons[8] == "birthday: not a date as YYYY-MM-DD"
    assert reasons[9] == reasons[10] == "birthday must be between 1900-01-01 and today"
    assert reasons[11] == "name: String should have at most 64 characters"
    assert reasons[12] == "tags: List should have at most 50 items after validation, not 51"
    assert reasons[13] == "tags: String should have at most 32 characters"
    assert reasons[14] == "has 3 fields, the header has 6"
    assert reasons[19] == "conflict: openid and customer_ref belong to different members"
    assert (
        reasons[20]
        == "conflict: openid o_has_ref_0001 belongs to a member with another customer_ref"
    )
    assert reasons[21] == "conflict: customer_ref CRM-1 belongs to a member with another openid"

    assert (await member(sessions, openid="o_good_000001")).birthday == date(2000, 2, 29)
    assert (await member(sessions, openid="o_multi_00001")).name == "two\nlines"
    assert (await member(sessions, openid="o_good_000002")).tags == ["a", "b"]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Member)) == 5


async def test_member_import_twice_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "members.csv",
        ["openid", "customer_ref", "name", "phone", "birthday", "tags"],
        [
            [f"o_rerun_{n:05d}", f"CRM-{n}" if n % 2 else "", f"会员{n}", "", "1990-01-02", "a;b"]
            for n in range(25)
        ]
        + [["", "CRM-ONLY", "只有编号", "", "", ""], ["o_bad", "", "", "x", "", ""]],
    )
    first = await import_members(sessions, source, batch_size=10)
    before = await snapshot(sessions)
    second = await import_members(sessions, source, batch_size=7)
    assert (first.imported, first.unchanged, first.rejected) == (26, 0, 1)
    assert (second.imported, second.unchanged, second.rejected) == (0, 26, 1)
    assert await snapshot(sessions) == before


async def test_orders_credit_points_by_openid_and_customer_ref(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_members(sessions, o_buyer_00001=None, o_customer_1="CRM-1")
    source = write_csv(
        tmp_path / "orders.csv",
        [*ORDER_HEADER, "category"],
        [
            ["A-1", "o_buyer_00001", "", "12345", PAID.isoformat(), "pos", "food"],
            ["A-2", "", "CRM-1", "20000", PAID.astimezone(RULES.zone).isoformat(), "mall", ""],
        ],
    )
    summary = await import_orders(sessions, RULES, source)
    assert (summary.imported, summary.unchanged, summary.rejected) == (2, 0, 0)
    assert (await member(sessions, openid="o_buyer_00001")).points_balance == 123
    assert (await member(sessions, customer_ref="CRM-1")).points_balance == 200
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.shop_order_id == "A-1"))
    assert order is not None
    assert (order.amount_fen, order.channel, order.category, order.points_earned) == (
        12345,
        "pos",
        "food",
        123,
    )
    assert order.paid_at == PAID


async def test_bad_order_rows_are_reported_by_line_and_good_ones_land(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_members(sessions, o_buyer_00001="CRM-1")
    paid = PAID.isoformat()
    limit = RULES.points.max_order_fen
    rows = [
        ["B-1", "o_buyer_00001", "", "10000", paid, "pos"],  # 2
        ["B-2", "o_nobody_0001", "", "10000", paid, "pos"],  # 3
        ["B-3", "", "CRM-404", "10000", paid, "pos"],  # 4
        ["B-4", "o_buyer_00001", "", "12.50", paid, "pos"],  # 5
        ["B-5", "o_buyer_00001", "", "0", paid, "pos"],  # 6
        ["B-6", "o_buyer_00001", "", str(limit + 1), paid, "pos"],  # 7
        ["B-7", "o_buyer_00001", "", "10000", "yesterday", "pos"],  # 8
        ["B-8", "o_buyer_00001", "", "10000", "2024-05-01T10:00:00", "pos"],  # 9
        ["B-9", "o_buyer_00001", "", "10000", (PAID + timedelta(days=1)).isoformat(), "pos"],
        ["B-10", "o_buyer_00001", "", "10000", paid, ""],  # 11
        ["B-11", "o_buyer_00001", "CRM-1", "10000", paid, "pos"],  # 12
        ["B-1", "o_buyer_00001", "", "99999", paid, "pos"],  # 13: same id, other contents
        ["B-1", "o_buyer_00001", "", "10000", paid, "pos"],  # 14: the same order again
        ["", "o_buyer_00001", "", "10000", paid, "pos"],  # 15
        ["B-12", "o_buyer_00001", "", "5000", paid, "pos"],  # 16
    ]
    source = write_csv(tmp_path / "orders.csv", ORDER_HEADER, rows)
    summary = await import_orders(sessions, RULES, source, batch_size=5)
    assert (summary.imported, summary.unchanged, summary.rejected) == (2, 1, 12)
    assert report_of(summary.report) == [
        (3, "unknown member: no member with openid o_nobody_0001"),
        (4, "unknown member: no member with customer_ref CRM-404"),
        (5, "amount_fen: not a whole number of fen"),
        (6, "amount_fen: Input should be greater than 0"),
        (7, f"amount_fen: exceeds {limit}"),
        (8, "paid_at: not an ISO 8601 date and time"),
        (9, "paid_at: Input should have timezone info"),
        (10, "paid_at: is in the future"),
        (11, "channel: is required"),
        (12, "give exactly one of openid and customer_ref"),
        (13, "conflict: order B-1 was reported with other contents"),
        (15, "order_id: is required"),
    ]
    assert (await member(sessions, openid="o_buyer_00001")).points_balance == 150


async def test_order_import_twice_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_members(sessions, **{f"o_rerun_{n:05d}": f"CRM-{n}" for n in range(5)})
    rows = [
        [
            f"R-{n}",
            f"o_rerun_{n % 5:05d}" if n % 3 else "",
            "" if n % 3 else f"CRM-{n % 5}",
            str(5_000 + 997 * n),
            (PAID - timedelta(minutes=n)).isoformat(),
            "pos",
        ]
        for n in range(40)
    ]
    source = write_csv(
        tmp_path / "orders.csv", ORDER_HEADER, [*rows, ["R-x", "o_none", "", *rows[0][3:]]]
    )
    first = await import_orders(sessions, RULES, source, batch_size=16)
    before = await snapshot(sessions)
    assert (first.imported, first.unchanged, first.rejected) == (40, 0, 1)
    assert before["orders"] == 40
    assert before["tier_changes"] > 0  # 8 orders each: every member was upgraded on the way
    second = await import_orders(sessions, RULES, source, batch_size=9)
    assert (second.imported, second.unchanged, second.rejected) == (0, 40, 1)
    assert await snapshot(sessions) == before


async def test_imported_orders_earn_what_the_api_credits(
    client: TestClient, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    # A birthday this month doubles points; the fourth order upgrades to silver (×1.2).
    birthday = f"1990-{PAID.astimezone(RULES.zone).month:02d}-01"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    response = await client.put(
        "/api/v1/members/o_via_api_0001", json={"birthday": birthday}, headers=headers
    )
    assert response.status == 201
    amounts = [10_000, 25_050, 999, 40_000, 10_000, 77_777]
    api_orders = [
        {
            "order_id": f"API-{n}",
            "openid": "o_via_api_0001",
            "amount_fen": amount,
            "paid_at": (PAID - timedelta(minutes=10 - n)).isoformat(),
            "channel": "pos",
        }
        for n, amount in enumerate(amounts)
    ]
    for body in api_orders:
        response = await client.post("/api/v1/orders", json=body, headers=headers)
        assert response.status == 201, await response.text()

    members = write_csv(
        tmp_path / "members.csv", ["openid", "birthday"], [["o_via_csv_0001", birthday]]
    )
    assert (await import_members(sessions, members)).imported == 1
    header = ["order_id", "openid", "amount_fen", "paid_at", "channel"]
    orders = write_csv(
        tmp_path / "orders.csv",
        header,
        [
            [f"CSV-{n}", "o_via_csv_0001", o["amount_fen"], o["paid_at"], "pos"]
            for n, o in enumerate(api_orders)
        ],
    )
    assert (await import_orders(sessions, RULES, orders, batch_size=4)).imported == len(amounts)

    async def history(openid: str) -> dict[str, Any]:
        async with sessions() as session:
            m = (await session.scalars(select(Member).where(Member.openid == openid))).one()
            earned = await session.scalars(
                select(Order.points_earned).where(Order.member_id == m.id).order_by(Order.id)
            )
            ledger = await session.execute(
                select(LedgerEntry.kind, LedgerEntry.points, LedgerEntry.balance_after)
                .where(LedgerEntry.member_id == m.id)
                .order_by(LedgerEntry.id)
            )
            lots = await session.execute(
                select(PointLot.amount, PointLot.expires_at)
                .where(PointLot.member_id == m.id)
                .order_by(PointLot.id)
            )
            tiers = await session.execute(
                select(TierChange.from_tier, TierChange.to_tier).where(TierChange.member_id == m.id)
            )
            questions = await session.scalars(
                select(Delivery.not_before)
                .where(Delivery.member_id == m.id, Delivery.purpose == "csat_order")
                .order_by(Delivery.not_before)
            )
            return {
                "balance": m.points_balance,
                "tier": m.tier,
                "earned": list(earned),
                "ledger": [tuple(r) for r in ledger],
                "lots": [tuple(r) for r in lots],
                "tiers": [tuple(r) for r in tiers],
                "questions": list(questions),
            }

    via_api, via_csv = await history("o_via_api_0001"), await history("o_via_csv_0001")
    assert via_csv == via_api
    assert via_csv["earned"] == [200, 501, 19, 800, 240, 1866]
    assert via_csv["tiers"] == [("basic", "silver")]
    days = timedelta(days=RULES.ratings.after_order_days)
    assert via_csv["questions"] == [PAID - timedelta(minutes=10 - n) + days for n in range(6)]

    # The API's own orders, exported and imported again, are recognised as already recorded.
    exported = write_csv(
        tmp_path / "exported.csv",
        header,
        [[o["order_id"], o["openid"], o["amount_fen"], o["paid_at"], "pos"] for o in api_orders],
    )
    summary = await import_orders(sessions, RULES, exported)
    assert (summary.imported, summary.unchanged, summary.rejected) == (0, len(amounts), 0)
    assert await history("o_via_api_0001") == via_api


async def test_an_imported_first_order_starts_the_referral_window_and_plans_the_question(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await add_members(sessions, o_referrer_0001=None, o_newcomer_001=None)
    async with sessions.begin() as session:
        ids = dict((await session.execute(select(Member.openid, Member.id))).all())
        link = await link_for(session, ids["o_referrer_0001"], utcnow())
        session.add(
            Referral(
                referrer_id=ids["o_referrer_0001"],
                referee_id=ids["o_newcomer_001"],
                code=link.code,
                source="subscribe",
                status="joined",
                attributed_at=utcnow(),
                referrer_points=0,
                newcomer_points=0,
            )
        )
    late = PAID - timedelta(days=10)
    source = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [
            ["N-1", "o_newcomer_001", "", "30000", PAID.isoformat(), "pos"],
            ["N-2", "o_newcomer_001", "", "10000", PAID.isoformat(), "pos"],
            # Reported ten days after it was paid: too late to ask about it (as in the API).
            ["L-1", "o_referrer_0001", "", "10000", late.isoformat(), "pos"],
        ],
    )
    summary = await import_orders(sessions, RULES, source)
    assert (summary.imported, summary.unchanged, summary.rejected) == (3, 0, 0)

    async def state() -> tuple[Any, ...]:
        async with sessions() as session:
            referral = (await session.scalars(select(Referral))).one()
            first = await session.scalar(select(Order.id).where(Order.shop_order_id == "N-1"))
            questions = await session.execute(
                select(Delivery.dedupe_key, Delivery.member_id, Delivery.not_before).order_by(
                    Delivery.dedupe_key
                )
            )
            return (
                (referral.status, referral.first_order_id == first, referral.reward_due_at),
                [tuple(row) for row in questions],
            )

    referral, questions = await state()
    window = timedelta(days=RULES.referrals.return_window_days)
    assert referral == ("pending", True, PAID + window)
    due = PAID + timedelta(days=RULES.ratings.after_order_days)
    newcomer = ids["o_newcomer_001"]
    assert questions == [("csat_order:N-1", newcomer, due), ("csat_order:N-2", newcomer, due)]
    # Imported again: recognised, and nothing more is started or planned.
    again = await import_orders(sessions, RULES, source)
    assert (again.imported, again.unchanged, again.rejected) == (0, 3, 0)
    assert await state() == (referral, questions)


async def test_a_failing_batch_is_retried_row_by_row(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_members(sessions, o_buyer_00001=None)
    take_order = bot.importer.take_order

    async def failing_on_f2(
        session: AsyncSession, rules: ProgrammeRules, m: Member, data: OrderIn, now: datetime
    ) -> Any:
        if data.shop_order_id == "F-2":
            raise IntegrityError("INSERT INTO orders ...", {}, Exception("duplicate key\nDETAIL"))
        return await take_order(session, rules, m, data, now)

    monkeypatch.setattr(bot.importer, "take_order", failing_on_f2)
    rows = [[f"F-{n}", "o_buyer_00001", "", "10000", PAID.isoformat(), "pos"] for n in range(4)]
    source = write_csv(tmp_path / "orders.csv", ORDER_HEADER, rows)
    summary = await import_orders(sessions, RULES, source)
    assert (summary.imported, summary.unchanged, summary.rejected) == (3, 0, 1)
    assert report_of(summary.report) == [(4, "not saved: Exception: duplicate key")]
    buyer = await member(sessions, openid="o_buyer_00001")
    assert buyer.points_balance == 300
    async with sessions() as session:
        ids = await session.scalars(select(Order.shop_order_id).order_by(Order.id))
        assert list(ids) == ["F-0", "F-1", "F-3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"name,phone\nx,12345\n", "missing column openid or customer_ref"),
        (b"openid,nmae\no_x,y\n", "unknown column nmae (known: openid, customer_ref, name,"),
        (b"openid,openid\no_x,o_y\n", "a column appears twice in the header"),
        ("openid,name\no_x,张三\n".encode("gbk"), "not UTF-8 text (save it as CSV UTF-8)"),
        (
            b"openid,name\no_x," + b"a" * 200_000,
            "not CSV after line 1 (field larger than field limit (131072))",
        ),
    ],
)
async def test_unusable_files_are_refused_before_anything_is_written(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "members.csv"
    source.write_bytes(content)
    with pytest.raises(ImportFileError, match="^" + re.escape(str(source))) as caught:
        await import_members(sessions, source)
    assert message in str(caught.value)
    assert not (tmp_path / "members.csv.report.csv").exists()


async def test_order_file_needs_its_columns(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "orders.csv", ["order_id", "openid", "paid_at"], [])
    with pytest.raises(ImportFileError, match=r"missing column amount_fen, channel$"):
        await import_orders(sessions, RULES, source)
    with pytest.raises(ImportFileError, match="would overwrite the file being imported"):
        await import_orders(sessions, RULES, source, report=tmp_path / "." / "orders.csv")


async def test_progress_bar_counts_rows_on_stderr(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "m.csv", ["openid"], [[f"o_bar_{n:06d}"] for n in range(30)])
    await import_members(sessions, source, batch_size=10, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "members: 100%" in captured.err
    assert "30/30" in captured.err


def write_config(tmp_path: Path, db_url: str, redis_url: str) -> Path:
    config = tmp_path / "import.toml"
    config.write_text(
        f'[wechat]\nappid = "{APPID}"\nsecret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        f'[api]\ntoken = "{API_TOKEN}"\n'
        f'[database]\nurl = "{db_url}"\n[redis]\nurl = "{redis_url}"\n',
        encoding="utf-8",
    )
    return config


async def run_cli(*args: str | Path, code: str | None = None) -> tuple[int, str, str]:
    """``python -m bot ARGS`` (or ``python -c CODE ARGS``); exit status, stdout, stderr."""
    command = ["-c", code] if code else ["-m", "bot"]
    async with child_process(
        *(sys.executable, *command, *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        out, err = await asyncio.wait_for(process.communicate(), timeout=STARTUP_SECONDS)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_import_command(
    sessions: async_sessionmaker[AsyncSession], db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, db_url, redis_url)
    members = write_csv(
        tmp_path / "members.csv", ["openid", "name"], [["o_cli_000001", "甲"], ["o_cli_000002", ""]]
    )
    status, out, err = await run_cli("--config", config, "import", "members", members)
    assert (status, err) == (0, "")
    report = tmp_path / "members.csv.report.csv"
    assert out == f"2 imported, 0 unchanged, 0 rejected; report: {report}\n"
    assert report_of(report) == []

    orders = write_csv(
        tmp_path / "orders.csv",
        ["order_id", "openid", "amount_fen", "paid_at", "channel"],
        [
            ["C-1", "o_cli_000001", "10000", PAID.isoformat(), "pos"],
            ["C-2", "o_cli_000003", "10000", PAID.isoformat(), "pos"],
        ],
    )
    other = tmp_path / "out" / "rejected.csv"
    other.parent.mkdir()
    status, out, _ = await run_cli(
        "--config", config, "import", "orders", orders, "--report", other
    )
    assert status == 1
    assert out == f"1 imported, 0 unchanged, 1 rejected; report: {other}\n"
    assert report_of(other) == [(3, "unknown member: no member with openid o_cli_000003")]
    assert (await member(sessions, openid="o_cli_000001")).points_balance == 100

    status, out, err = await run_cli("--config", config, "import", "orders", tmp_path / "none.csv")
    assert (status, out) == (2, "")
    assert (
        err == f"import error: {tmp_path / 'none.csv'}: cannot read (No such file or directory)\n"
    )


# Runs the CLI in a child process and prints its peak resident set size (KiB). VmHWM rather
# than getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of pytest would
# start out with pytest's own peak and hide its own.
_PEAK_RSS = (
    "import re, sys\n"
    "from bot.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "print('peak', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
    "sys.exit(status)\n"
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
async def test_large_order_file_imports_in_bounded_memory(
    sessions: async_sessionmaker[AsyncSession], db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Recording a new order takes a dozen statements (6-8 ms an order here, on either database),
    # so 20,000 fresh orders would take minutes. They are recorded up front in bulk instead, and
    # the file is the re-run of an export: every row still goes through parsing, the batched
    # member lookup and record_order (which loads the Order), where memory could pile up.
    members, rows = 100, 20_000
    async with sessions.begin() as session:
        await session.execute(
            insert(Member),
            [{"openid": f"o_big_{n:06d}", "created_at": PAID, "tags": []} for n in range(members)],
        )
        ids = dict((await session.execute(select(Member.openid, Member.id))).all())
        orders = []
        for n in range(rows):
            data = OrderIn(
                shop_order_id=f"BIG-{n:06d}",
                member_id=ids[f"o_big_{n % members:06d}"],
                amount_fen=1_000 + n % 9_000,
                paid_at=PAID - timedelta(minutes=n),
                channel="pos",
            )
            orders.append(
                {
                    "shop_order_id": data.shop_order_id,
                    "member_id": data.member_id,
                    "amount_fen": data.amount_fen,
                    "paid_at": data.paid_at,
                    "channel": data.channel,
                    "points_earned": 0,
                    "fingerprint": data.fingerprint(),
                    "created_at": PAID,
                }
            )
        await session.execute(insert(Order), orders)

    def order_file(name: str, count: int) -> Path:
        return write_csv(
            tmp_path / name,
            ORDER_HEADER,
            [
                [
                    f"BIG-{n:06d}",
                    f"o_big_{n % members:06d}",
                    "",
                    1_000 + n % 9_000,
                    (PAID - timedelta(minutes=n)).isoformat(),
                    "pos",
                ]
                for n in range(count)
            ],
        )

    config = write_config(tmp_path, db_url, redis_url)
    peaks = {}
    for count in (2_000, rows):
        status, out, err = await run_cli(
            "--config",
            config,
            "import",
            "orders",
            order_file(f"{count}.csv", count),
            code=_PEAK_RSS,
        )
        assert status == 0, err
        summary, peak = out.splitlines()
        assert summary.startswith(f"0 imported, {count} unchanged, 0 rejected")
        peaks[count] = int(peak.removeprefix("peak "))
    # Ten times the rows may not cost more than a few MiB: nothing grows with the file. (Holding
    # the whole file in one batch costs about 35 MiB more here.)
    assert peaks[rows] - peaks[2_000] < 8 * 1024, peaks
