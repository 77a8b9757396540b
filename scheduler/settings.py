"""The scheduler's settings: which programme jobs run when, and how leadership is kept."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scheduler.crontab import crontab_trigger
from scheduler.jobs import JOBS

# Local time in the programme's zone. Expiry runs just after midnight so members see a new
# day's balance; tiers are re-evaluated monthly, at night, after the expiry jobs.
DEFAULT_SCHEDULE = {
    "expire-points": "5 0 * * *",
    "expire-coupons": "10 0 * * *",
    "reevaluate-tiers": "30 2 1 * *",
    "refresh-segments": "0 3 * * *",
    # Pushes go out in the morning, well clear of the quiet hours.
    "birthdays": "0 9 * * *",
    "holiday-greetings": "0 10 * * *",
    # Daily, after the segments' refresh (03:00): a gift follows each entry within the day.
    "winback": "0 11 * * *",
    # On the 1st after the tier re-evaluation (02:30), so each member gets their new tier's.
    "monthly-tier-benefits": "30 10 1 * *",
    "anniversaries": "30 9 * * *",
    "behaviour-points": "0 12 * * *",
    # 30 days before the monthly re-evaluation (02:30 on the 1st): the 1st, at 10:00.
    "tier-keeping": "0 10 1 * *",
    "expiry-reminders": "0 10 * * *",
    "coupon-reminders": "30 10 * * *",
    # The year before, on 2 January (local): 1 January's greeting would spend the day's cap.
    "annual-recap": "0 10 2 1 *",
    # Referral rewards fall due around the clock (the return window ends when it ends).
    "referral-rewards": "20 * * * *",
    "nps-sample": "0 10 5 * *",
    # After the night's segment refresh (03:00), before the team starts on the 1st.
    "callbacks": "0 4 1 * *",
    "prune-events": "40 3 * * *",
    # Last month's 《效果跟踪表》, on the 1st after the night's jobs (segments refresh at 03:00).
    "monthly-report": "0 6 1 * *",
}


class SchedulerConfig(BaseModel):
    """``[scheduler]``: job name → 5-field crontab in the programme's zone, and leadership."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Takeover after a leader dies takes at most this long; renewals go every third of it.
    leader_ttl_seconds: int = Field(default=30, ge=1, le=3600)
    # A run found late by at most this much (a leader change, a restart) still happens.
    misfire_grace_seconds: int = Field(default=3600, ge=1)
    jobs: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCHEDULE))

    @field_validator("jobs")
    @classmethod
    def _known_jobs_and_crontabs(cls, jobs: dict[str, str]) -> dict[str, str]:
        for name, expression in jobs.items():
            if name not in JOBS:
                known = ", ".join(sorted(JOBS))
                raise ValueError(f"unknown job {name!r} (known jobs: {known})")
            try:
                crontab_trigger(expression, ZoneInfo("UTC"))
            except ValueError as exc:
                raise ValueError(
                    f"job {name!r}: bad crontab {expression!r} "
                    f"(5 fields: minute hour day month weekday): {exc}"
                ) from None
        return jobs

    def triggers(self, zone: ZoneInfo) -> dict[str, CronTrigger]:
        """Each configured job's trigger, firing in ``zone``'s local time."""
        return {name: crontab_trigger(expression, zone) for name, expression in self.jobs.items()}
