"""The monthly 《效果跟踪表》: ``python -m bot report monthly``, the scheduler's job on the 1st,
and the HTML page in a real browser (on tests/models/test_figures.py's data set)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.database import create_engine, create_sessionmaker
from bot.push.outbox import Outbox
from models.figures import FIGURES, StoredFigure
from models.rules import ProgrammeRules
from scheduler.jobs import JOBS, JobContext
from tests.helpers import bot_config, run_bot
from tests.models.test_figures import ZONE, _load


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def _loaded(db_url: str) -> None:
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as session:
        await _load(session)
    await engine.dispose()


async def test_the_command_writes_the_html_and_a_csv_of_every_figure(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    await _loaded(db_url)
    out = tmp_path / "out"
    code, stdout, err = await run_bot(
        bot_config(tmp_path, db_url, redis_url),
        "report",
        "monthly",
        "--month",
        "2026-10",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert stdout.startswith(f"report 2026-10: {out}/report-2026-10.html and ")
    assert _names(out) == ["report-2026-10.csv", "report-2026-10.html"]
    rows = list(csv.DictReader((out / "report-2026-10.csv").read_text("utf-8-sig").splitlines()))
    overall = {r["figure"]: r for r in rows if r["month"] == "2026-10" and r["group"] == "all"}
    assert set(overall) == {f.code for f in FIGURES}
    assert overall["repurchase_12m"]["target"] == "75.0"
    assert overall["aov"]["value"] == "15000.0"
    assert any(r["group"] == "tier:gold" for r in rows)
    page = (out / "report-2026-10.html").read_text("utf-8")
    assert page.count('data-chart="') == len(FIGURES)
    assert "<script" not in page


@pytest.mark.parametrize(
    ("month", "says"),
    [
        ("2026-13", "report error: --month '2026-13' is not a month (YYYY-MM, e.g. 2026-11)"),
        ("November", "report error: --month 'November' is not a month (YYYY-MM, e.g. 2026-11)"),
        ("2999-01", "report error: --month 2999-01 has not ended yet"),
    ],
)
async def test_a_bad_month_is_one_line_and_exit_2(
    db_url: str, redis_url: str, tmp_path: Path, month: str, says: str
) -> None:
    out = tmp_path / "out"
    code, stdout, err = await run_bot(
        bot_config(tmp_path, db_url, redis_url),
        "report",
        "monthly",
        "--month",
        month,
        "--out",
        str(out),
    )
    assert code == 2
    assert stdout == ""
    assert err.startswith(says)
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


async def test_an_unwritable_folder_is_one_line_and_exit_2(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # A folder under a regular file cannot be made, whoever runs the tests (root included).
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, stdout, err = await run_bot(
        bot_config(tmp_path, db_url, redis_url),
        "report",
        "monthly",
        "--month",
        "2026-10",
        "--out",
        str(blocker / "reports"),
    )
    assert code == 2
    assert stdout == ""
    assert err.startswith(f"report error: cannot write to {blocker}/reports: ")
    assert len(err.strip().splitlines()) == 1
    assert _names(tmp_path) == ["a-file", "bot.toml"]


@pytest.fixture
async def sessions(db_url: str) -> async_sessionmaker[AsyncSession]:
    engine = create_engine(db_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_the_scheduler_writes_last_months_report_on_the_first_and_keeps_it(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with sessions() as session:
        await _load(session)
    rules = ProgrammeRules(reports_folder=str(tmp_path / "reports"))
    job = JOBS["monthly-report"]
    first = datetime(2026, 11, 1, 6, 0, tzinfo=ZONE).astimezone(UTC)
    outcome = await job.run(JobContext(sessions, rules, Outbox(None), first))  # type: ignore[arg-type]
    assert outcome.startswith("2026-10 written to ")
    later = datetime(2026, 12, 1, 6, 0, tzinfo=ZONE).astimezone(UTC)
    await job.run(JobContext(sessions, rules, Outbox(None), later))  # type: ignore[arg-type]
    assert _names(tmp_path / "reports") == [
        "report-2026-10.csv",
        "report-2026-10.html",
        "report-2026-11.csv",
        "report-2026-11.html",
    ]


async def test_the_report_opens_in_a_browser_with_every_chart(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, page: Page
) -> None:
    async with sessions() as session:
        await _load(session)
    rules = ProgrammeRules(reports_folder=str(tmp_path))
    now = datetime(2026, 11, 1, 6, 0, tzinfo=ZONE).astimezone(UTC)
    await JOBS["monthly-report"].run(JobContext(sessions, rules, Outbox(None), now))  # type: ignore[arg-type]
    await page.goto((tmp_path / "report-2026-10.html").as_uri())
    await expect(page.locator("h1")).to_contain_text("策略执行效果跟踪表")
    await expect(page.locator("#tracking tbody tr")).to_have_count(len(FIGURES))
    await expect(page.locator("#tracking tr[data-figure=nps]")).to_contain_text("25.0")
    charts = page.locator("img[data-chart]")
    await expect(charts).to_have_count(len(FIGURES))
    shown = await charts.evaluate_all(
        "els => els.filter(e => e.complete && e.naturalWidth > 0).map(e => e.dataset.chart)"
    )
    assert shown == [f.code for f in FIGURES]


async def test_the_command_reads_stored_months_and_recompute_replaces_them(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    await _loaded(db_url)
    config = bot_config(tmp_path, db_url, redis_url)
    out = tmp_path / "out"
    args = ("report", "monthly", "--month", "2026-10", "--out", str(out))
    code, _, err = await run_bot(config, *args)
    assert code == 0, err
    engine = create_engine(db_url)
    async with create_sessionmaker(engine)() as session:
        await session.execute(
            update(StoredFigure)
            .where(StoredFigure.month == "2026-10", StoredFigure.figure == "aov")
            .where(StoredFigure.group == "all")
            .values(numerator=1, denominator=1)
        )
        await session.commit()
    await engine.dispose()

    def aov() -> str:
        rows = csv.DictReader((out / "report-2026-10.csv").read_text("utf-8-sig").splitlines())
        found = [
            r for r in rows if (r["month"], r["figure"], r["group"]) == ("2026-10", "aov", "all")
        ]
        return found[0]["value"]

    code, _, err = await run_bot(config, *args)
    assert code == 0, err
    assert aov() == "1.0"  # what is stored is what is reported
    code, _, err = await run_bot(config, *args, "--recompute")
    assert code == 0, err
    assert aov() == "15000.0"
