"""Canned replies (快捷回复) agents put in the reply box: kept in the database, grouped, edited
by admins, with placeholders for the member's name and tier.

A reply's text is a ``str.format`` template whose only fields are ``{name}`` and ``{tier}``
(literal braces doubled); anything else is refused when it is saved, so rendering a stored
reply never fails. The table starts with the defaults it is given the first time it is read
(``canned_replies``): a marker in ``programme_state`` records that it was seeded, so an admin
who deletes every reply keeps an empty list.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, dialect_insert
from models.state import ProgrammeState, get_state

_ID = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
PLACEHOLDERS = ("name", "tier")
SEEDED = "canned_replies_seeded"
MAX_GROUP, MAX_TEXT = 16, 500


class CannedReply(Base):
    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    group: Mapped[str] = mapped_column("grp", String(MAX_GROUP))
    text: Mapped[str] = mapped_column(String(MAX_TEXT))
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TemplateProblem(ValueError):
    """A reply text that cannot be saved: ``unknown`` placeholders (their names in
    ``names``), or unbalanced ``braces``."""

    def __init__(self, reason: str, names: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.names = list(names)


def check_template(text: str) -> None:
    """Raise TemplateProblem unless ``text``'s only fields are {name} and {tier}."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise TemplateProblem("braces") from None
    unknown = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        # {name!r}, {tier:>10}, {name.attr}, {0}: only the two plain names are fields.
        if field not in PLACEHOLDERS or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            unknown.append(shown + (f":{spec}" if spec else "") + "}")
    if unknown:
        raise TemplateProblem("unknown", unknown)


def render(text: str, name: str, tier: str) -> str:
    """A checked reply with the member's name and tier filled in."""
    return text.format_map({"name": name, "tier": tier})


async def canned_replies(
    session: AsyncSession, defaults: Sequence[tuple[str, str]], now: datetime
) -> list[CannedReply]:
    """Every canned reply in order (the defaults written first if the table was never
    seeded; commit the session to keep them). Two first reads at once seed once: only the
    one that writes the marker writes the defaults."""
    marked = None
    if await get_state(session, SEEDED) is None:
        marked = await session.scalar(
            dialect_insert(session)(ProgrammeState)
            .values(key=SEEDED, value=True)
            .on_conflict_do_nothing(index_elements=[ProgrammeState.key])
            .returning(ProgrammeState.key)
        )
    if marked is not None:
        for position, (group, text) in enumerate(defaults):
            check_template(text)
            session.add(CannedReply(group=group, text=text, position=position, updated_at=now))
        await session.flush()
    rows = await session.scalars(select(CannedReply).order_by(CannedReply.position, CannedReply.id))
    return list(rows.all())
