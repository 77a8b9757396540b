"""The chat's 「确认」 on PostgreSQL, sent in groups: confirmations of one item that arrive while
a redemption of that item is on its way to the database go together, as the next call of
``redeem_rewards`` (migration 0027), one transaction.

Why: every redemption of an item ends by updating the item's stock row, so confirmations sent
each on their own queue on that row inside PostgreSQL. Measured on this project's two-core
machine (bench/README.md, redemption), a call cost PostgreSQL 0.7 ms of CPU when alone and
2.4 ms when 32 waited on the row together, and the database's core became the limit. A group
takes the row once and pays one round trip, one statement and one commit for all its members.

One call per item is in flight from this process at a time (models/call_groups.py). The first
confirmation goes at once (nothing waits when it is quiet); those arriving meanwhile go as the
next call, at most ``GROUP_SIZE`` together. A caller cancelled before its group is sent is left
out; once sent, its redemption stands (as a statement already sent would). Each member's
redemption is checked, answered and, if it fails, undone on its own: a group writes and answers
what its members would alone, one after another (tests/models/test_rewards_in_db.py compares
every row; tests/models/test_redemption_groups.py the grouping itself).

SQLite has no such function and one writer at a time: there ``redeem`` runs alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.base import driver_on_its_own, on_postgresql, points_committed
from models.call_groups import CallGroups
from models.redemption import (
    RecordColumns,
    Redeemed,
    outcome_of,
    redeem_alone_in_database,
    redeem_on_its_own,
    redeem_reward_params,
)
from models.rewards import Refusal
from models.rules import ProgrammeRules

# Each member's redemption in a group is a subtransaction, with the redemption's own savepoint
# inside it: 16 members stay within the 64 subtransaction ids PostgreSQL keeps in shared memory
# per transaction (past that, other sessions' visibility checks look them up in pg_subtrans).
GROUP_SIZE = 16

_REDEEM_REWARDS = (
    "SELECT * FROM redeem_rewards($1::bigint[], $2::bigint, $3::text[], $4::timestamptz[],"
    " $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::text[], $9::text[], $10::text[],"
    " $11::int[], $12::text[], $13::text) ORDER BY slot"
)
Answer = Redeemed | Refusal
# redeem_reward's parameters that differ between the members of a group, in the call's order.
_PER_MEMBER = (
    "key",
    "now",
    "month_start",
    "year_start",
    "expected",
    "pickup_code",
    "coupon_code",
)


class RedemptionFailed(RuntimeError):
    """PostgreSQL failed one member's redemption in a group (undone; the others stand)."""


class Redemptions:
    """The chat's redemptions for one process (wired by the app factory): grouped per item on
    PostgreSQL, alone on SQLite. ``close`` waits for the groups on their way."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # The rules travel with each call: a group's members were all asked under them.
        self._groups: CallGroups[int, tuple[ProgrammeRules, dict[str, Any]], Answer] = CallGroups(
            self._send_group, GROUP_SIZE
        )

    async def redeem(
        self,
        rules: ProgrammeRules,
        member_id: int,
        item_id: int,
        *,
        key: str,
        now: datetime,
        expected_points: int | None = None,
    ) -> Redeemed | Refusal:
        """``redeem_on_its_own``'s answer, committed when this returns (see the module)."""
        if not on_postgresql(self._sessions):
            return await redeem_on_its_own(
                self._sessions,
                rules,
                member_id,
                item_id,
                key=key,
                now=now,
                expected_points=expected_points,
            )
        params = redeem_reward_params(rules, member_id, item_id, key, now, expected_points)
        return await self._groups.call(item_id, (rules, params))

    async def close(self) -> None:
        """Wait for every group on its way (their members are answered)."""
        await self._groups.close()

    async def _send_group(
        self, item_id: int, group: list[tuple[ProgrammeRules, dict[str, Any]]]
    ) -> list[Answer | Exception]:
        rows = await _redeem_group(self._sessions, item_id, [params for _, params in group])
        answered = list(zip(group, rows, strict=True))
        redeemed = [p["member_id"] for (_, p), row in answered if row.outcome == "redeemed"]
        if redeemed:
            points_committed(self._sessions, redeemed)
        answers: list[Answer | Exception] = []
        for (rules, params), row in answered:
            try:
                if row.outcome == "code_taken":
                    # Another coupon already has the code drawn: this member again, alone, as
                    # ``redeem_on_its_own`` would (a fresh code each attempt).
                    answer = await redeem_alone_in_database(
                        self._sessions,
                        rules,
                        params["member_id"],
                        item_id,
                        params["key"],
                        params["now"],
                        params["expected"],
                    )
                elif row.outcome == "failed":
                    raise RedemptionFailed(row.failure)
                else:
                    answer = outcome_of(row, params["member_id"], params["key"])
            except Exception as error:  # noqa: BLE001 - the caller raises it
                answers.append(error)
            else:
                answers.append(answer)
        return answers


async def _redeem_group(
    sessions: async_sessionmaker[AsyncSession],
    item_id: int,
    group: list[dict[str, Any]],
) -> list[Any]:
    """``redeem_rewards``' rows for ``group`` (``redeem_reward``'s parameters each), in order."""
    first = group[0]
    per_member = [[params[name] for params in group] for name in _PER_MEMBER]
    async with driver_on_its_own(sessions) as driver:
        records = await driver.fetch(
            _REDEEM_REWARDS,
            [params["member_id"] for params in group],
            item_id,
            *per_member,
            first["coupon_kinds"],
            first["coupon_days"],
            [params["expire_key"] for params in group],
            first["expire_reason"],
        )
    if len(records) != len(group):
        raise RuntimeError(f"redeem_rewards answered {len(records)} of {len(group)} members")
    return [RecordColumns(record) for record in records]
