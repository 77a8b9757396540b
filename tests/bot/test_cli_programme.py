"""The programme's commands: ledger verify, jobs list/run, menu push (dry run)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from bot.database import create_engine
from tests.helpers import bot_config, run_bot


async def test_ledger_verify_exits_non_zero_on_a_mismatch(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO members (openid, subscribed, created_at, tags, points_balance, tier) "
                "VALUES ('o_cli_1', true, CURRENT_TIMESTAMP, '[]', 0, 'basic')"
            )
        )
    code, out, _ = await run_bot(config, "ledger", "verify")
    assert (code, out.strip()) == (0, "ledger verify: every balance matches its ledger and lots")
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE members SET points_balance = 5"))
    await engine.dispose()
    code, out, _ = await run_bot(config, "ledger", "verify")
    assert code == 1
    assert "balance 5, ledger 0, lots 0" in out


async def test_jobs_list_and_run(db_url: str, redis_url: str, tmp_path: Path) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    # The monthly report lands in the test's folder, not in the checkout's data/.
    with config.open("a", encoding="utf-8") as extra:
        extra.write(f'[programme]\nreports_folder = "{tmp_path / "reports"}"\n')
    code, out, _ = await run_bot(config, "jobs", "list")
    assert code == 0
    names = {line.split()[0] for line in out.splitlines()}
    assert names == {
        "expire-points",
        "expire-coupons",
        "reevaluate-tiers",
        "refresh-segments",
        "expiry-reminders",
        "coupon-reminders",
        "birthdays",
        "holiday-greetings",
        "winback",
        "tier-keeping",
        "annual-recap",
        "referral-rewards",
        "nps-sample",
        "callbacks",
        "prune-events",
        "monthly-report",
        "monthly-tier-benefits",
        "anniversaries",
        "behaviour-points",
    }
    for job in sorted(names):
        code, out, err = await run_bot(config, "jobs", "run", job)
        assert code == 0, err
        assert out.startswith(f"{job}: ")
    code, _, err = await run_bot(config, "jobs", "run", "no-such-job")
    assert code == 2
    assert "unknown job" in err


async def test_menu_push_dry_run_prints_the_menu(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    code, out, _ = await run_bot(
        bot_config(tmp_path, db_url, redis_url), "menu", "push", "--dry-run"
    )
    assert code == 0
    menu = json.loads(out)
    assert menu["button"][0]["name"] == "会员中心"


async def test_a_dry_run_shows_the_audience_and_keeps_nothing(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = bot_config(tmp_path, db_url, redis_url)
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO members (openid, subscribed, created_at, tags, points_balance, tier, "
                "birthday) VALUES ('o_cli_bday', true, CURRENT_TIMESTAMP, '[]', 0, 'silver', "
                "'1990-12-01')"
            )
        )
    code, out, err = await run_bot(
        config, "jobs", "run", "birthdays", "--date", "2026-12-01", "--dry-run"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1] == "  audience: 1 push(es)"
    assert lines[2].startswith("  o_cli_bday: 🎂 生日快乐！送您一张【生日礼券】")
    async with engine.connect() as connection:
        kept = (
            await connection.execute(
                text("SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM coupons)")
            )
        ).one()
    assert tuple(kept) == (0, 0)
    code, out, _ = await run_bot(config, "jobs", "run", "birthdays", "--date", "2026-12-02")
    assert "0 birthday greetings planned" in out
    code, _, err = await run_bot(config, "jobs", "run", "birthdays", "--date", "12/01")
    assert code == 2
    assert "is not a date" in err
    await engine.dispose()
