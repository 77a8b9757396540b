"""The members of messages from openids the gate does not know, found or created in groups.

An openid the gate has no member id for (a first message, or a member quiet for longer than the
gate keeps ids) costs a lookup, and a first message an insert. Messages of this kind that arrive
while a group is on its way go together as the next (models/call_groups.py): one lookup for
all of them on the reading connection, then one insert of those not found, in a transaction of
its own. Under bench/peers.py's mixed load (half the members new) about a third of messages
are first messages; alone, each took a read and a write transaction of its own.

The lookup runs outside the insert's transaction: on SQLite, a transaction that reads and then
writes fails when another writer committed in between (its snapshot is stale), where an insert
that starts the transaction waits its turn.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.base import on_its_own
from models.call_groups import CallGroups
from models.members import create_members, member_ids_for

# Rows of one insert (five parameters each: far inside SQLite's and PostgreSQL's limits).
GROUP_SIZE = 64
_ALL = "members"  # one group key: every such message shares the members table


class NewMembers:
    """Wired by the app factory: ``member_id`` for each message whose member id is unknown."""

    def __init__(self, reader: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        """``reader``: the engine of read-only answers (autocommit on PostgreSQL)."""
        self._reader = reader
        self._sessions = sessions
        self._groups: CallGroups[str, tuple[str, datetime], tuple[int, bool]] = CallGroups(
            self._send, GROUP_SIZE
        )

    async def member_id(self, openid: str, at: datetime) -> tuple[int, bool]:
        """The member's id, created as a follower by a first message sent at ``at`` if there
        is none; and whether this message created it (for one of several first messages of
        the same member at once, only one did)."""
        return await self._groups.call(_ALL, (openid, at))

    async def close(self) -> None:
        """Wait for the groups on their way."""
        await self._groups.close()

    async def _send(
        self, _: str, group: list[tuple[str, datetime]]
    ) -> list[tuple[int, bool] | Exception]:
        async with self._reader.connect() as connection:
            known = await member_ids_for(connection, {openid for openid, _ in group})
        first: dict[str, datetime] = {}
        for openid, at in group:
            if openid not in known:
                first.setdefault(openid, at)
        made: dict[str, tuple[int, bool]] = {}
        if first:
            async with on_its_own(self._sessions) as session:
                made = await create_members(session, first)
        answers: list[tuple[int, bool] | Exception] = []
        answered: set[str] = set()
        for openid, _ in group:
            if openid in known:
                answers.append((known[openid], False))
            else:
                member_id, created = made[openid]
                answers.append((member_id, created and openid not in answered))
            answered.add(openid)
        return answers
