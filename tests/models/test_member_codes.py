"""Member codes: bound to the member and the minute, live in their window, spent once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.database import create_engine, create_sessionmaker
from models.member_codes import (
    CODE_SHAPE,
    LOOKBACK_STEPS,
    CodeWindow,
    MemberCodeRefused,
    MemberCodeUse,
    claim_member_code,
    member_code,
    read_code,
    resolve_member_code,
)
from models.members import Member

KEY = b"k" * 32
WINDOW = CodeWindow(seconds=60, grace_seconds=15, order_hours=24)
# The start of a minute, so the window's edges are exact.
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_code_is_18_digits_in_its_own_range_and_rotates() -> None:
    step = WINDOW.step(T0)
    codes = {member_code(KEY, 42, step + n) for n in range(50)}
    assert len(codes) == 50
    assert all(CODE_SHAPE.fullmatch(code) for code in codes)
    assert member_code(KEY, 42, step) == member_code(KEY, 42, step)  # a reload: the same
    assert member_code(KEY, 42, step) != member_code(KEY, 43, step)
    assert member_code(b"other key", 42, step) != member_code(KEY, 42, step)


def test_a_code_is_live_in_its_minute_and_the_grace_then_expired() -> None:
    code = member_code(KEY, 42, WINDOW.step(T0))
    assert read_code(KEY, code, T0, WINDOW).live  # type: ignore[union-attr]
    assert read_code(KEY, code, T0 + timedelta(seconds=74), WINDOW).live  # type: ignore[union-attr]
    late = read_code(KEY, code, T0 + timedelta(seconds=75), WINDOW)
    assert late is not None
    assert (late.member_id, late.live) == (42, False)
    # Past the look-back, nobody's.
    far = T0 + timedelta(seconds=60 * LOOKBACK_STEPS)
    assert read_code(KEY, code, far, WINDOW) is None


def test_forged_and_foreign_codes_are_nobodys() -> None:
    code = member_code(KEY, 42, WINDOW.step(T0))
    tampered = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert read_code(KEY, tampered, T0, WINDOW) is None
    assert read_code(b"another key", code, T0, WINDOW) is None
    for junk in ("", "98", "12" + code[2:], code + "0", "９８" + code[2:]):
        assert read_code(KEY, junk, T0, WINDOW) is None


async def _member(session: AsyncSession, openid: str) -> int:
    member = Member(openid=openid, created_at=T0, tags=[])
    session.add(member)
    await session.flush()
    return member.id


async def test_resolve_spends_the_code_and_an_order_claims_it_once(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            alice = await _member(session, "o_code_alice")
        code = member_code(KEY, alice, WINDOW.step(T0))
        async with sessions.begin() as session:
            member = await resolve_member_code(session, KEY, code, T0, WINDOW)
            assert member.id == alice
        with pytest.raises(MemberCodeRefused) as again:
            async with sessions.begin() as session:
                await resolve_member_code(session, KEY, code, T0, WINDOW)
        assert again.value.reason == "used"
        later = T0 + timedelta(hours=3)  # the till reports its order later on
        async with sessions.begin() as session:
            assert await claim_member_code(session, KEY, code, "ORD-1", later, WINDOW) == alice
        async with sessions.begin() as session:  # the same order again: a retry
            assert await claim_member_code(session, KEY, code, "ORD-1", later, WINDOW) == alice
        with pytest.raises(MemberCodeRefused) as other:
            async with sessions.begin() as session:
                await claim_member_code(session, KEY, code, "ORD-2", later, WINDOW)
        assert other.value.reason == "used"
        async with sessions() as session:
            use = await session.get_one(MemberCodeUse, code)
        assert use.order_id == "ORD-1"
    finally:
        await engine.dispose()


async def test_an_order_claims_a_live_code_but_not_an_old_or_a_stale_one(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            alice = await _member(session, "o_code_alice")
        live = member_code(KEY, alice, WINDOW.step(T0))
        async with sessions.begin() as session:
            assert await claim_member_code(session, KEY, live, "ORD-1", T0, WINDOW) == alice
        old = member_code(KEY, alice, WINDOW.step(T0) - 2)
        resolved = member_code(KEY, alice, WINDOW.step(T0) - 1)
        async with sessions.begin() as session:
            await resolve_member_code(session, KEY, resolved, T0, WINDOW)
        cases = [
            (old, T0, "expired"),  # never resolved, past its minute
            (resolved, T0 + timedelta(hours=24), "expired"),  # resolved, past the order window
            ("98" + "0" * 16, T0, "unknown"),
        ]
        for code, now, reason in cases:
            with pytest.raises(MemberCodeRefused) as refused:
                async with sessions.begin() as session:
                    await claim_member_code(session, KEY, code, "ORD-9", now, WINDOW)
            assert refused.value.reason == reason, code
        async with sessions() as session:
            uses = (await session.scalars(select(MemberCodeUse.code))).all()
        assert sorted(uses) == sorted([live, resolved])  # the refusals wrote nothing
    finally:
        await engine.dispose()


async def test_two_tills_resolving_one_code_at_once_get_one_member(postgresql_url: str) -> None:
    engine = create_engine(postgresql_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            await session.execute(MemberCodeUse.__table__.delete())
            alice = await _member(session, f"o_code_race_{T0.timestamp():.0f}")
        code = member_code(KEY, alice, WINDOW.step(T0))

        async def resolve() -> str:
            try:
                async with sessions.begin() as session:
                    await resolve_member_code(session, KEY, code, T0, WINDOW)
            except MemberCodeRefused as exc:
                return exc.reason
            return "member"

        async def claim(order_id: str) -> str:
            try:
                async with sessions.begin() as session:
                    await claim_member_code(session, KEY, code, order_id, T0, WINDOW)
            except MemberCodeRefused as exc:
                return exc.reason
            return "claimed"

        assert sorted(await asyncio.gather(resolve(), resolve())) == ["member", "used"]
        outcomes = await asyncio.gather(*(claim(f"RACE-{n}") for n in range(4)))
        assert sorted(outcomes) == ["claimed", "used", "used", "used"]
    finally:
        async with sessions.begin() as session:
            await session.execute(MemberCodeUse.__table__.delete())
            await session.execute(Member.__table__.delete().where(Member.id == alice))
        await engine.dispose()
