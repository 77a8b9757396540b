"""The dashboard's figures against their targets, its month picker, and the monthly report's
download, over HTTP and in a real browser (on tests/models/test_figures.py's data set); the
birthday lists with masked phones and gift shipping."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect
from sqlalchemy import event, update

from bot import wiring
from models.base import utcnow
from models.figures import FIGURES, StoredFigure
from models.members import Member
from tests.bot.console.test_campaign_browser import sign_in
from tests.bot.console.test_console import add_staff, login
from tests.models.test_figures import _delivery, _load


async def _marketer(app_factory: Callable[..., Any]) -> TestClient:
    client = await app_factory()
    async with client.app[wiring.SESSIONS]() as session:
        members = await _load(session)
        # A push this week, for the dashboard's 30 days of pushes by purpose.
        session.add(_delivery(members["B"], "winback", utcnow()))
        await session.commit()
    await add_staff(client, "mia", "marketer")
    assert await login(client, "mia") == 303
    return client


def _row(page: str, code: str) -> str:
    found = re.search(rf'<tr data-figure="{code}">(.*?)</tr>', page, re.S)
    assert found, code
    return re.sub(r"<[^>]+>", "|", found[1])


async def test_the_dashboard_shows_target_actual_and_deviation(
    app_factory: Callable[..., Any],
) -> None:
    client = await _marketer(app_factory)
    response = await client.get("/console/dashboard?month=2026-10")
    assert response.status == 200
    page = await response.text()
    assert "2026年10月" in page
    repurchase = _row(page, "repurchase_12m")
    assert "≥ 75.0%" in repurchase
    assert "66.7%" in repurchase
    assert "−8.3 个百分点" in repurchase
    assert "未达标" in repurchase
    aov = _row(page, "aov")
    assert "¥155.00（同比+55%）" in aov
    assert "¥150.00" in aov
    assert "−¥5.00" in aov
    assert "达标" in _row(page, "wakeup")
    # One trend chart per figure, drawn here as SVG and embedded: no address elsewhere.
    charts = re.findall(r'<img src="data:image/svg\+xml;base64,[^"]+"[^>]*data-chart="(\w+)"', page)
    assert charts == [f.code for f in FIGURES]
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Segments and push purposes by their Chinese names.
    assert "核心忠诚" in page
    assert "唤醒挽回" in page
    assert ">winback<" not in page
    assert "下载《效果跟踪表》" in page


async def test_a_bad_month_is_named_and_a_running_month_has_no_download(
    app_factory: Callable[..., Any],
) -> None:
    client = await _marketer(app_factory)
    response = await client.get("/console/dashboard?month=2026-13")
    assert response.status == 400
    assert "无法查看“2026-13”" in await response.text()
    page = await (await client.get("/console/dashboard")).text()
    assert "本月截至今日" in page
    assert "download-html" not in page


async def test_the_monthly_report_downloads_as_html_and_csv(
    app_factory: Callable[..., Any],
) -> None:
    client = await _marketer(app_factory)
    response = await client.get("/console/reports/monthly?month=2026-10&format=csv")
    assert response.status == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="report-2026-10.csv"'
    text = await response.text()
    assert "2026-10,repurchase_12m,年度复购率,percent,all,4.0,6.0,66.6667,75.0" in text
    response = await client.get("/console/reports/monthly?month=2026-10")
    assert response.headers["Content-Disposition"] == 'attachment; filename="report-2026-10.html"'
    assert "策略执行效果跟踪表" in await response.text()
    for month, refusal in (("2026-13", "无法查看"), ("2999-01", "尚未结束"), ("", "无法查看")):
        response = await client.get(f"/console/reports/monthly?month={month}")
        assert response.status == 400, month
        assert refusal in await response.text()


async def test_a_marketer_picks_a_month_in_the_browser(
    app_factory: Callable[..., Any], page: Page
) -> None:
    client = await app_factory()
    async with client.app[wiring.SESSIONS]() as session:
        await _load(session)
    await add_staff(client, "mia", "marketer")
    base = str(client.make_url("/console/")).rstrip("/")
    await sign_in(page, base, "mia")
    await page.goto(f"{base}/dashboard?month=2026-10")
    await expect(page.locator("h1")).to_contain_text("2026年10月")
    await expect(page.locator("#tracking tr[data-figure=csat] .actual")).to_have_text("66.7%")
    await page.fill("#month-picker input[name=month]", "2026-09")
    await page.click("#month-picker button")
    await expect(page.locator("h1")).to_contain_text("2026年09月")
    await expect(page.locator("#tracking tr[data-figure=csat] .actual")).to_have_text("0.0%")
    charts = page.locator("img[data-chart]")
    await expect(charts).to_have_count(len(FIGURES))
    loaded = await charts.evaluate_all("els => els.filter(e => e.complete && e.naturalWidth > 0)")
    assert len(loaded) == len(FIGURES)


async def test_birthday_lists_mask_phones_for_marketers_and_track_shipping(
    app_factory: Callable[..., Any],
) -> None:
    client = await app_factory()
    zone = client.app[wiring.CONFIG].programme.zone
    today = utcnow().astimezone(zone).date()
    born = today.replace(year=1990) if (today.month, today.day) != (2, 29) else date(1992, 2, 29)
    async with client.app[wiring.SESSIONS].begin() as session:
        lily = Member(
            openid="o_bday_lily", name="莉莉", phone="13812345678", birthday=born, tier="diamond"
        )
        session.add_all([lily, Member(openid="o_bday_none", name="无生日", tier="diamond")])
        await session.flush()
        lily_id = lily.id
    await add_staff(client, "mia", "marketer")
    await add_staff(client, "boss", "admin")
    assert await login(client, "mia") == 303
    page = await (await client.get("/console/birthdays")).text()
    assert "莉莉" in page
    assert "无生日" not in page
    assert "138****5678" in page
    assert "13812345678" not in page
    assert "钻石会员" in page
    assert "生日礼券" in page
    assert "生日定制礼" in page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    response = await client.post(
        f"/console/birthdays/{lily_id}/gift",
        data={"csrf": token[1], "year": str(today.year), "tracking_number": "SF1234567890"},
        allow_redirects=False,
    )
    assert response.status == 303
    page = await (await client.get("/console/birthdays")).text()
    assert "已寄出" in page
    assert "SF1234567890" in page
    response = await client.get("/console/birthdays.csv?range=week")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="birthdays-')
    text = await response.text()
    assert "138****5678" in text
    assert "已寄出,SF1234567890" in text
    await client.post("/console/logout", data={"csrf": token[1]})
    assert await login(client, "boss") == 303
    assert "13812345678" in await (await client.get("/console/birthdays")).text()
    assert (await client.get("/console/birthdays?range=year")).status == 400


async def test_a_repeat_view_reads_the_stored_figures(app_factory: Callable[..., Any]) -> None:
    client = await _marketer(app_factory)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(client.app[wiring.ENGINE].sync_engine, "before_cursor_execute", record)

    def over_orders() -> int:
        return sum(1 for s in statements if re.search(r"\bFROM orders\b", s))

    first = await (await client.get("/console/dashboard")).text()  # this month, so far
    assert over_orders() > 0
    statements.clear()
    again = await (await client.get("/console/dashboard")).text()
    assert over_orders() == 0  # the trend and the month so far (under 5 minutes old) are read
    assert _row(again, "aov") == _row(first, "aov")
    # A month that has ended is read from what is stored.
    assert "66.7%" in _row(
        await (await client.get("/console/dashboard?month=2026-10")).text(), "repurchase_12m"
    )
    async with client.app[wiring.SESSIONS]() as session:
        await session.execute(
            update(StoredFigure)
            .where(StoredFigure.month == "2026-10", StoredFigure.figure == "repurchase_12m")
            .where(StoredFigure.group == "all")
            .values(numerator=1, denominator=8)
        )
        await session.commit()
    statements.clear()
    page = await (await client.get("/console/dashboard?month=2026-10")).text()
    assert over_orders() == 0
    assert "12.5%" in _row(page, "repurchase_12m")
