"""Canned replies: only {name} and {tier}, seeded once, also when two first reads race."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.base import utcnow
from models.canned import CannedReply, TemplateProblem, canned_replies, check_template, render

DEFAULTS = [("问候", "{name}您好，我是客服"), ("等级", "您是尊贵的{tier}")]


@pytest.mark.parametrize(
    ("text", "reason", "names"),
    [
        ("{phone}您好", "unknown", ["{phone}"]),
        ("{name!r}", "unknown", ["{name!r}"]),
        ("{tier:>9}", "unknown", ["{tier:>9}"]),
        ("{name.__class__}", "unknown", ["{name.__class__}"]),
        ("{0}{}", "unknown", ["{0}", "{}"]),
        ("您好{name", "braces", []),
        ("}", "braces", []),
    ],
)
def test_only_name_and_tier_are_placeholders(text: str, reason: str, names: list[str]) -> None:
    with pytest.raises(TemplateProblem) as problem:
        check_template(text)
    assert (problem.value.reason, problem.value.names) == (reason, names)


def test_a_checked_reply_renders() -> None:
    text = "{name}您好，{tier}专享 {{满减}}"
    check_template(text)
    assert render(text, "王芳", "金卡会员") == "王芳您好，金卡会员专享 {满减}"


async def test_seeded_once_and_an_emptied_list_stays_empty(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        assert [r.text for r in await canned_replies(session, DEFAULTS, utcnow())] == [
            "{name}您好，我是客服",
            "您是尊贵的{tier}",
        ]
    async with sessions.begin() as session:
        assert len(await canned_replies(session, DEFAULTS, utcnow())) == 2
        await session.execute(delete(CannedReply))
    async with sessions.begin() as session:
        assert await canned_replies(session, DEFAULTS, utcnow()) == []


async def test_two_first_reads_at_once_seed_once(
    sessions: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("concurrent writers: the PostgreSQL lane (SQLite has one writer)")

    async def first_read() -> int:
        async with sessions.begin() as session:
            return len(await canned_replies(session, DEFAULTS, utcnow()))

    await asyncio.gather(*(first_read() for _ in range(4)))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CannedReply)) == 2
