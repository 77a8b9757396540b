"""The recurrence picker writes the crontab (every day / week on a weekday / month on a day, at
a time); the crontab field stays as the advanced option; a bad pick is a clear form error and
nothing is saved."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import wiring
from models.campaigns import Campaign
from tests.bot.console.test_console import add_staff, csrf_of, login


async def save(client: TestClient, **picked: str) -> tuple[int, str]:
    await add_staff(client, "mia", "marketer")
    await login(client, "mia")
    data = {
        "csrf": await csrf_of(client, "/console/campaigns/new"),
        "name": "周期活动",
        "text_a": "会员日",
        "holdout_percent": "0",
        "schedule": "cron",
        **picked,
    }
    response = await client.post("/console/campaigns", data=data)
    return response.status, await response.text()


async def saved_cron(client: TestClient) -> str | None:
    async with client.app[wiring.SESSIONS]() as session:
        return await session.scalar(select(Campaign.cron))


@pytest.mark.parametrize(
    ("picked", "cron", "shown"),
    [
        ({"repeat": "daily", "repeat_time": "09:05"}, "5 9 * * *", "每天 09:05"),
        (
            {"repeat": "weekly", "repeat_weekday": "3", "repeat_time": "10:00"},
            "0 10 * * 3",
            "每周三 10:00",
        ),
        (
            {"repeat": "weekly", "repeat_weekday": "7", "repeat_time": "20:30"},
            "30 20 * * 7",
            "每周日 20:30",
        ),
        (
            {"repeat": "monthly", "repeat_day": "28", "repeat_time": "08:00"},
            "0 8 28 * *",
            "每月28日 08:00",
        ),
        ({"repeat": "advanced", "cron": "0 10 * * 1-5"}, "0 10 * * 1-5", "crontab 0 10 * * 1-5"),
    ],
)
async def test_a_pick_writes_the_crontab(
    client: TestClient, picked: dict[str, str], cron: str, shown: str
) -> None:
    status, page = await save(client, **picked)
    assert status == 200  # followed to the campaign's page
    assert await saved_cron(client) == cron
    assert shown in page


@pytest.mark.parametrize(
    ("picked", "error"),
    [
        ({"repeat": "weekly", "repeat_weekday": "3", "repeat_time": ""}, "请选择发送时刻"),
        ({"repeat": "daily", "repeat_time": "24:00"}, "请选择发送时刻"),
        ({"repeat": "weekly", "repeat_weekday": "8", "repeat_time": "10:00"}, "请选择每周的哪一天"),
        (
            {"repeat": "monthly", "repeat_day": "31", "repeat_time": "10:00"},
            "每月发送日需为1到28日",
        ),
        ({"repeat": "yearly", "repeat_time": "10:00"}, "请选择重复方式"),
        ({"repeat": "advanced", "cron": "every monday"}, "not a crontab"),
        ({"repeat": "advanced", "cron": ""}, "a recurring campaign needs cron"),
    ],
)
async def test_a_bad_pick_is_a_form_error_and_nothing_is_saved(
    client: TestClient, picked: dict[str, str], error: str
) -> None:
    status, page = await save(client, **picked)
    assert status == 422
    assert error in page
    async with client.app[wiring.SESSIONS]() as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 0
