"""Crontabs as people write them, read into APScheduler triggers."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def crontab_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A standard five-field crontab (day of week 0 or 7 = Sunday) as an APScheduler trigger.
    APScheduler 3 numbers weekdays from Monday = 0, so numbers become names first."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
    # Numbers, not step sizes ("*/2"), become names.
    fields[4] = re.sub(r"(?<![/\d])[0-7](?!\d)", lambda m: _WEEKDAYS[int(m[0])], fields[4])
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=zone
    )
