"""生日 in chat: a member without a birthday on record gives it once, in any common form
(3月5日, 3-5, 1990年3月5日, 0305); the bot repeats it back and records it after a 「是」.

A birthday already on record is changed only by staff (the console or the API), so nobody can
move theirs to earn the birthday-month bonus every month; one given in chat earns it from the
first day of the next calendar month (``Member.birthday_bonus_from``).
"""

from __future__ import annotations

from datetime import date, datetime

from handlers import clarify
from handlers.inbound import Inbound
from handlers.router import Router, intent
from handlers.understanding.slots import NO_YEAR, find_date
from messages import chat_copy
from messages.replies import TextReply
from models.base import utcnow
from models.members import record_birthday_once

router = Router("birthday")
EARLIEST_YEAR = 1900


def _first_of_next_month(now: datetime, msg: Inbound) -> date:
    local = now.astimezone(msg.svc.rules.zone).date()
    return date(local.year + local.month // 12, local.month % 12 + 1, 1)


@router.on(intent("birthday"))
async def give_birthday(msg: Inbound) -> TextReply:
    """「我的生日是3月5号」: repeat the date back for a 「是」; without a date, ask for it."""
    member = await msg.load_member()
    if member.birthday is not None:
        return TextReply(
            chat_copy.BIRTHDAY_ALREADY.format(month=member.birthday.month, day=member.birthday.day)
        )
    given = msg.slot("date")
    if given is None:
        await clarify.ask(msg, clarify.BIRTHDAY)
        return TextReply(chat_copy.BIRTHDAY_ASK)
    if given == "invalid":
        found = find_date(msg.understood.text if msg.understood else msg.text)
        await clarify.ask(msg, clarify.BIRTHDAY)
        month, day = (found.month, found.day_of_month) if found else (0, 0)
        return TextReply(chat_copy.BIRTHDAY_BAD_DATE.format(month=month, day=day))
    day = date.fromisoformat(given)
    today = utcnow().astimezone(msg.svc.rules.zone).date()
    if day.year != NO_YEAR and not date(EARLIEST_YEAR, 1, 1) <= day <= today:
        await clarify.ask(msg, clarify.BIRTHDAY)
        return TextReply(chat_copy.BIRTHDAY_FUTURE)
    await clarify.ask(msg, clarify.BIRTHDAY_CONFIRM, date=given)
    return TextReply(chat_copy.BIRTHDAY_CONFIRM.format(month=day.month, day=day.day))


@router.on(intent("birthday_confirm"))
async def confirm_birthday(msg: Inbound) -> TextReply:
    """「是」 records the date repeated back, once; 「不是」 drops it."""
    await clarify.forget(msg)
    if msg.slot("answer") != "yes":
        return TextReply(chat_copy.BIRTHDAY_NOT_CONFIRMED)
    if msg.member_id is None:
        raise RuntimeError("birthday confirmed without a member")
    day = date.fromisoformat(msg.slot("date") or "")
    now = utcnow()
    if not await record_birthday_once(msg.db, msg.member_id, day, _first_of_next_month(now, msg)):
        recorded = (await msg.load_member()).birthday or day
        return TextReply(chat_copy.BIRTHDAY_ALREADY.format(month=recorded.month, day=recorded.day))
    multiplier = f"{msg.svc.rules.points.birthday_multiplier.normalize():f}"
    return TextReply(
        chat_copy.BIRTHDAY_RECORDED.format(month=day.month, day=day.day, multiplier=multiplier)
    )
