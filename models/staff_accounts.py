"""Staff accounts: the one set of rules the command line (``bot staff``) and the console's
staff page both use to add an account, change its role, reset its password, disable or enable
it. Each change is audited in its transaction (``by``: the admin who made it; None from the
command line).

- a username is 3-32 characters of lower-case letters, digits, ``_``, ``.`` and ``-``;
- a role is one of ROLES; the password's own rule (length) and hash are bot/console/auth.py's
  ``hash_password``, whose hash is passed in here;
- no change may leave the programme without an enabled admin: the enabled admins' rows are
  locked first (PostgreSQL), so two admins demoting or disabling each other at once cannot
  both succeed;
- a disabled account's open work-list items go back to the shared list. Ending the account's
  sessions (role, password or access changed) is the caller's, in Redis.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.follow_ups import unassign_staff
from models.staff import ROLES, Staff, audit, find_staff

USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")
ADMIN = "admin"


class StaffRefused(ValueError):
    """The change breaks a rule (``reason``: username, role, exists, missing, last_admin);
    nothing was written."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def check_username(username: str) -> None:
    """StaffRefused unless ``username`` is a valid username."""
    if not USERNAME.match(username):
        raise StaffRefused("username", "a username is 3-32 of a-z, 0-9, '_', '.', '-' (lower case)")


def check_role(role: str) -> None:
    """StaffRefused unless ``role`` is a console role."""
    if role not in ROLES:
        raise StaffRefused("role", f"a role is one of {', '.join(ROLES)}")


async def add_account(
    session: AsyncSession,
    username: str,
    password_hash: str,
    role: str,
    now: datetime,
    by: int | None,
) -> Staff:
    """A new enabled account (offline)."""
    check_username(username)
    check_role(role)
    if await find_staff(session, username) is not None:
        raise StaffRefused("exists", f"staff {username} exists already")
    staff = Staff(
        username=username,
        password_hash=password_hash,
        role=role,
        availability="offline",
        disabled=False,
        created_at=now,
    )
    session.add(staff)
    await session.flush()
    await audit(session, by, "staff_add", now, target=username, role=role)
    return staff


async def _locked(session: AsyncSession, staff_id: int) -> Staff:
    """The account, locked after every enabled admin's row (one lock order for all changes)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            select(Staff.id)
            .where(Staff.role == ADMIN, Staff.disabled.is_(False))
            .order_by(Staff.id)
            .with_for_update()
        )
    staff = await session.get(Staff, staff_id, with_for_update=True, populate_existing=True)
    if staff is None:
        raise StaffRefused("missing", "no such staff account")
    return staff


async def _another_admin_stays(session: AsyncSession, staff_id: int) -> None:
    others = await session.scalar(
        select(func.count()).where(
            Staff.role == ADMIN, Staff.disabled.is_(False), Staff.id != staff_id
        )
    )
    if not others:
        raise StaffRefused("last_admin", "the last enabled admin cannot lose admin rights")


async def change_role(
    session: AsyncSession, staff_id: int, role: str, now: datetime, by: int | None
) -> bool:
    """Give the account ``role``; False when it had it already (nothing written)."""
    check_role(role)
    staff = await _locked(session, staff_id)
    if staff.role == role:
        return False
    if staff.role == ADMIN and role != ADMIN and not staff.disabled:
        await _another_admin_stays(session, staff.id)
    before, staff.role = staff.role, role
    await audit(session, by, "staff_role", now, target=staff.username, role=role, was=before)
    return True


async def set_disabled(
    session: AsyncSession, staff_id: int, disabled: bool, now: datetime, by: int | None
) -> bool:
    """Disable the account (it goes offline, its open follow-ups back to the list) or enable
    it again; False when it was so already (nothing written)."""
    staff = await _locked(session, staff_id)
    if staff.disabled == disabled:
        return False
    if disabled and staff.role == ADMIN and not staff.disabled:
        await _another_admin_stays(session, staff.id)
    staff.disabled = disabled
    if disabled:
        staff.availability = "offline"
        await unassign_staff(session, staff.id)
    action = "staff_disable" if disabled else "staff_enable"
    await audit(session, by, action, now, target=staff.username)
    return True


async def reset_password(
    session: AsyncSession, staff_id: int, password_hash: str, now: datetime, by: int | None
) -> bool:
    """Give the account a new password (its hash)."""
    staff = await _locked(session, staff_id)
    staff.password_hash = password_hash
    await audit(session, by, "staff_password", now, target=staff.username)
    return True
