"""Bulk import of members and orders from CSV files, streamed in batches.

The file is read twice, row by row: first to check it can be imported at all (encoding, CSV
syntax, header) and to count its rows for the progress bar, then to import. Rows are validated
with the API's own schemas and written one batch per transaction, so memory stays bounded
whatever the file's size. A bad row goes to the report (``line,reason``) and never stops the
others. Importing the same file again changes nothing: members are upserted, and orders go
through ``take_order`` (bot/order_intake.py), the API's own path, which is idempotent on the
order id.
"""

from __future__ import annotations

import csv
import itertools
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from bot.api import schemas as s
from bot.order_intake import take_order
from models.base import utcnow
from models.ledger import KeyConflict
from models.members import Member
from models.orders import OrderConflict, order_problem
from models.rules import ProgrammeRules

BATCH_SIZE = 1000
# Every file names the member by openid or customer_ref: one of the columns at least.
_KEYS = ("openid", "customer_ref")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_FEN = re.compile(r"^[0-9]{1,18}$")
_REF: TypeAdapter[str] = TypeAdapter(s.Ref)
# Errors one row's data can cause (a duplicate racing in, a value a column refuses, a ledger
# key already taken). Anything else (a lost connection, a locked database, a bug) would fail
# every row alike, so it stops the import instead: committed batches stay, a re-run resumes.
_ROW_ERRORS = (IntegrityError, DataError, KeyConflict)

Parsed = TypeVar("Parsed")


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, not UTF-8 CSV, wrong header)."""


class _Rejected(Exception):
    """The row is refused; the message is the reason written to the report."""


@dataclass(slots=True)
class ImportSummary:
    """What an import did; ``report`` lists the rejected rows."""

    report: Path
    imported: int = 0
    unchanged: int = 0
    rejected: int = 0

    def line(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.imported} imported, {self.unchanged} unchanged, "
            f"{self.rejected} rejected; report: {self.report}"
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    line: int
    changed: bool = False
    reason: str | None = None


class _Kind(Protocol[Parsed]):
    """What differs between importing members and orders."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    def parse(self, row: dict[str, str]) -> Parsed: ...

    async def apply(
        self, session: AsyncSession, rows: Sequence[tuple[int, Parsed]]
    ) -> list[_Outcome]: ...


def default_report_path(source: Path) -> Path:
    """Where the report goes unless told: ``FILE.csv.report.csv`` next to the input."""
    return source.with_name(source.name + ".report.csv")


async def import_members(
    sessions: async_sessionmaker[AsyncSession],
    source: Path,
    report: Path | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> ImportSummary:
    """Create or update members from ``source``, matched by openid, else by customer_ref.

    Empty cells leave the stored value as it is; ``tags`` (semicolon-separated) replaces the
    member's list. Raises ImportFileError, before writing anything, if the file is unusable.
    """
    return await _import(sessions, source, report, _Members(), batch_size, progress)


async def import_orders(
    sessions: async_sessionmaker[AsyncSession],
    rules: ProgrammeRules,
    source: Path,
    report: Path | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> ImportSummary:
    """Take paid orders from ``source`` with ``take_order``, exactly as the API does: points,
    tier upgrades, a referred member's return window on their first order, and the rating
    question (for an order paid within the last week).

    The questions are written as delivery rows, not put on the Redis stream: the delivery
    workers' sweep enqueues them within about ten minutes of their time, so an import needs
    no Redis. An order already recorded counts as unchanged; the same order id with other
    contents is rejected as a conflict. Raises ImportFileError, before writing anything, if
    the file is unusable.
    """
    return await _import(sessions, source, report, _Orders(rules), batch_size, progress)


async def _import(
    sessions: async_sessionmaker[AsyncSession],
    source: Path,
    report: Path | None,
    kind: _Kind[Any],
    batch_size: int,
    progress: bool,
) -> ImportSummary:
    # The file is read with blocking calls: the import is the only work on this event loop.
    report = report or default_report_path(source)
    header, total, out = _prepare(source, report, kind)
    summary = ImportSummary(report)
    bar = tqdm(total=total, unit=" rows", desc=kind.name, file=sys.stderr, disable=not progress)
    with out, bar:
        writer = csv.writer(out)
        writer.writerow(["line", "reason"])
        for batch in _batches(itertools.islice(_records(source), 1, None), batch_size):
            valid: list[tuple[int, Any]] = []
            outcomes: list[_Outcome] = []
            for line, fields in batch:
                try:
                    valid.append((line, kind.parse(_cells(header, fields))))
                except _Rejected as exc:
                    outcomes.append(_Outcome(line, reason=str(exc)))
            outcomes += await _commit(sessions, kind, valid)
            for outcome in sorted(outcomes, key=lambda o: o.line):
                if outcome.reason is not None:
                    summary.rejected += 1
                    writer.writerow([outcome.line, outcome.reason])
                elif outcome.changed:
                    summary.imported += 1
                else:
                    summary.unchanged += 1
            bar.update(len(batch))
    return summary


async def _commit(
    sessions: async_sessionmaker[AsyncSession],
    kind: _Kind[Any],
    rows: Sequence[tuple[int, Any]],
) -> list[_Outcome]:
    """Apply one batch in one transaction; if that fails, each row in a transaction of its own."""
    if not rows:
        return []
    try:
        async with sessions.begin() as session:
            return await kind.apply(session, rows)
    except _ROW_ERRORS:
        pass  # rolled back; the rows one at a time show which is at fault
    outcomes: list[_Outcome] = []
    for row in rows:
        try:
            async with sessions.begin() as session:
                outcomes += await kind.apply(session, [row])
        except _ROW_ERRORS as exc:
            outcomes.append(_Outcome(row[0], reason=f"not saved: {_error_text(exc)}"))
    return outcomes


def _error_text(exc: Exception) -> str:
    # The driver's own message, without the SQL and parameters SQLAlchemy appends to it.
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first_line = str(cause).strip().partition("\n")[0]
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


def _records(source: Path) -> Iterator[tuple[int, list[str]]]:
    """The file's records with the line each starts on (header = 1); blank ones skipped.

    Physical lines, so a row with a quoted field spanning lines is reported where it starts.
    """
    with source.open(newline="", encoding="utf-8-sig") as file:  # -sig: Excel writes a BOM
        reader = csv.reader(file)
        start = 1
        for fields in reader:
            # Spreadsheets leave rows of empty cells (",,,") after the data: not rows to report.
            if any(field.strip() for field in fields):
                yield start, fields
            start = reader.line_num + 1


def _scan(source: Path, kind: _Kind[Any]) -> tuple[list[str], int]:
    """The header and the number of data rows; raises ImportFileError if the file is unusable."""
    header: list[str] | None = None
    count = last = 0
    try:
        for line, fields in _records(source):
            last = line
            if header is None:
                header = [name.strip().lower() for name in fields]
            else:
                count += 1
    except OSError as exc:
        raise ImportFileError(f"{source}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{source}: not UTF-8 text (save it as CSV UTF-8)") from None
    except csv.Error as exc:
        raise ImportFileError(f"{source}: not CSV after line {last} ({exc})") from None
    if header is None:
        raise ImportFileError(f"{source}: the file is empty")
    columns = set(header)
    if len(columns) != len(header):
        raise ImportFileError(f"{source}: a column appears twice in the header")
    missing = [name for name in kind.required if name not in columns]
    if not columns & set(_KEYS):
        missing.append(" or ".join(_KEYS))
    if missing:
        raise ImportFileError(f"{source}: missing column {', '.join(missing)}")
    known = (*kind.required, *_KEYS, *kind.optional)
    if unknown := sorted(columns - set(known)):
        # Refused rather than ignored: a misspelt column would otherwise import as empty.
        raise ImportFileError(
            f"{source}: unknown column {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return header, count


def _prepare(source: Path, report: Path, kind: _Kind[Any]) -> tuple[list[str], int, TextIO]:
    """The header, the number of rows and the report opened; nothing is written on errors."""
    if report.resolve() == source.resolve():
        raise ImportFileError(f"{report}: the report would overwrite the file being imported")
    header, total = _scan(source, kind)
    try:
        return header, total, report.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise ImportFileError(f"{report}: cannot write the report ({exc.strerror})") from None


def _batches(
    records: Iterable[tuple[int, list[str]]], size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    batch: list[tuple[int, list[str]]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _cells(header: list[str], fields: list[str]) -> dict[str, str]:
    """The row as column → cell, without surrounding spaces."""
    if len(fields) != len(header):
        raise _Rejected(f"has {len(fields)} fields, the header has {len(header)}")
    return {name: value.strip() for name, value in zip(header, fields, strict=True)}


def _given(row: dict[str, str], *names: str) -> dict[str, str]:
    """The named cells that are not empty (an empty cell means "no value")."""
    return {name: row[name] for name in names if row.get(name)}


def _reason(exc: ValidationError) -> str:
    """The first problem, as ``field: message`` (the wording the API uses)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    return f"{field}: {message}" if field else message


def _day(text: str) -> date | None:
    # date.fromisoformat alone would also take "20000101" and week dates like "2000-W01-1".
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


async def _members_of(
    session: AsyncSession, openids: set[str], refs: set[str], *, lock: bool = False
) -> tuple[dict[str, Member], dict[str, Member]]:
    """The batch's members in one query, indexed by openid and by customer_ref."""
    query = select(Member).where(or_(Member.openid.in_(openids), Member.customer_ref.in_(refs)))
    if lock:
        # In id order, so two imports locking overlapping batches cannot deadlock.
        query = query.order_by(Member.id).with_for_update()
    by_openid: dict[str, Member] = {}
    by_ref: dict[str, Member] = {}
    for member in await session.scalars(query):
        if member.openid is not None:
            by_openid[member.openid] = member
        if member.customer_ref is not None:
            by_ref[member.customer_ref] = member
    return by_openid, by_ref


@dataclass(frozen=True, slots=True)
class _MemberRow:
    openid: str | None
    customer_ref: str | None
    profile: dict[str, Any]


class _Members:
    name = "members"
    required = ()
    optional = ("name", "phone", "birthday", "tags")

    def parse(self, row: dict[str, str]) -> _MemberRow:
        keys = _given(row, *_KEYS)
        if not keys:
            raise _Rejected("openid or customer_ref: give at least one")
        for field, value in keys.items():
            try:
                _REF.validate_python(value)
            except ValidationError as exc:
                raise _Rejected(f"{field}: {exc.errors()[0]['msg']}") from None
        profile: dict[str, Any] = _given(row, "name", "phone")
        if text := row.get("birthday"):
            if (birthday := _day(text)) is None:
                raise _Rejected("birthday: not a date as YYYY-MM-DD")
            profile["birthday"] = birthday
        if tags := row.get("tags"):
            # Order kept; repeats and empty pieces ("a;;b", a trailing ";") dropped.
            pieces = (tag.strip() for tag in tags.split(";"))
            profile["tags"] = list(dict.fromkeys(tag for tag in pieces if tag))
        try:
            s.MemberIn.model_validate(profile)
        except ValidationError as exc:
            raise _Rejected(_reason(exc)) from None
        return _MemberRow(keys.get("openid"), keys.get("customer_ref"), profile)

    async def apply(
        self, session: AsyncSession, rows: Sequence[tuple[int, _MemberRow]]
    ) -> list[_Outcome]:
        by_openid, by_ref = await _members_of(
            session,
            {row.openid for _, row in rows if row.openid},
            {row.customer_ref for _, row in rows if row.customer_ref},
        )
        outcomes = []
        for line, row in rows:
            try:
                changed = _upsert(session, row, by_openid, by_ref)
            except _Rejected as exc:
                outcomes.append(_Outcome(line, reason=str(exc)))
            else:
                outcomes.append(_Outcome(line, changed=changed))
        return outcomes


def _upsert(
    session: AsyncSession,
    row: _MemberRow,
    by_openid: dict[str, Member],
    by_ref: dict[str, Member],
) -> bool:
    """Update (or create) the row's member; True if anything changed.

    Identifiers are never overwritten: a row may fill in a member's missing openid or
    customer_ref, but not contradict one the member already has.
    """
    found_by_openid = by_openid.get(row.openid) if row.openid else None
    found_by_ref = by_ref.get(row.customer_ref) if row.customer_ref else None
    if found_by_openid and found_by_ref and found_by_openid is not found_by_ref:
        raise _Rejected("conflict: openid and customer_ref belong to different members")
    member = found_by_openid or found_by_ref
    if member is None:
        member = Member(subscribed=False, created_at=utcnow(), tags=[])
        session.add(member)
    elif row.openid and member.openid not in (None, row.openid):
        raise _Rejected(
            f"conflict: customer_ref {row.customer_ref} belongs to a member with another openid"
        )
    elif row.customer_ref and member.customer_ref not in (None, row.customer_ref):
        raise _Rejected(
            f"conflict: openid {row.openid} belongs to a member with another customer_ref"
        )
    changed = False
    for field, value in {"openid": row.openid, "customer_ref": row.customer_ref}.items():
        if value is not None and getattr(member, field) != value:
            setattr(member, field, value)
            changed = True
    for field, value in row.profile.items():
        if getattr(member, field) != value:
            setattr(member, field, value)
            changed = True
    # Later rows of the batch must find this member, new or newly identified.
    if member.openid:
        by_openid[member.openid] = member
    if member.customer_ref:
        by_ref[member.customer_ref] = member
    return changed


class _Orders:
    name = "orders"
    required = ("order_id", "amount_fen", "paid_at", "channel")
    optional = ("category",)

    def __init__(self, rules: ProgrammeRules) -> None:
        self.rules = rules

    def parse(self, row: dict[str, str]) -> s.OrderRowIn:
        values: dict[str, Any] = _given(row, "order_id", *_KEYS, "channel", "category")
        # The API's schema is strict (a number, a datetime), so the text is converted first.
        if amount := row.get("amount_fen"):
            if not _FEN.match(amount):
                raise _Rejected("amount_fen: not a whole number of fen")
            values["amount_fen"] = int(amount)
        if paid_at := row.get("paid_at"):
            try:
                values["paid_at"] = datetime.fromisoformat(paid_at)
            except ValueError:
                raise _Rejected("paid_at: not an ISO 8601 date and time") from None
        try:
            data = s.OrderRowIn.model_validate(values)
        except ValidationError as exc:
            raise _Rejected(_reason(exc)) from None
        if problem := order_problem(self.rules, data.amount_fen, data.paid_at, utcnow()):
            raise _Rejected(": ".join(problem))
        return data

    async def apply(
        self, session: AsyncSession, rows: Sequence[tuple[int, s.OrderRowIn]]
    ) -> list[_Outcome]:
        # Locked, as the API locks the member, so each order's tier upgrade is judged in turn.
        by_openid, by_ref = await _members_of(
            session,
            {data.openid for _, data in rows if data.openid},
            {data.customer_ref for _, data in rows if data.customer_ref},
            lock=True,
        )
        outcomes = []
        for line, data in rows:
            # The schema guarantees exactly one of openid and customer_ref.
            if data.openid is not None:
                member, key = by_openid.get(data.openid), f"openid {data.openid}"
            else:
                member = by_ref.get(str(data.customer_ref))
                key = f"customer_ref {data.customer_ref}"
            if member is None:
                outcomes.append(_Outcome(line, reason=f"unknown member: no member with {key}"))
                continue
            order = data.for_member(member.id)
            try:
                taken = await take_order(session, self.rules, member, order, utcnow())
            except OrderConflict as exc:
                outcomes.append(_Outcome(line, reason=f"conflict: {exc}"))
            else:
                outcomes.append(_Outcome(line, changed=not taken.outcome.replayed))
        return outcomes
