"""The ``[delivery]`` and ``[hooks]`` settings: the push pipeline and events for shop systems."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.push.templates import BY_PURPOSE


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateConfig(_Section):
    """A template message for one purpose: its id, and which of the push's fields fills each
    of the template's keys (e.g. ``{first = "title", keyword1 = "tier", remark = "note"}``)."""

    template_id: str = Field(min_length=1)
    fields: dict[str, str] = Field(min_length=1)
    url: str = ""


class DeliveryConfig(_Section):
    """The push pipeline (bot/push/outbox.py)."""

    # Consumers in this process; `python -m bot serve --role worker` runs more on their own.
    workers: int = Field(default=1, ge=0, le=64)
    concurrency: int = Field(default=32, ge=1, le=1000)
    # Service notifications with a template configured go as template messages; the purposes
    # and the fields each fills are bot/push/templates.py's.
    templates: dict[str, TemplateConfig] = {}
    # Calls a second per WeChat API, shared by every worker (a Redis token bucket).
    rate_per_second: dict[str, float] = {"template": 200.0, "custom": 200.0, "mass": 1.0}
    max_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    # A stream entry a consumer has held this long without acknowledging is taken over.
    reclaim_idle_seconds: int = Field(default=60, ge=1, le=3600)
    # Marketing is deferred (not dropped) during quiet hours, local time, "HH:MM".
    quiet_hours_start: str = Field(default="22:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_hours_end: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # Marketing pushes a member may get, per local day and per ISO week (service ones are exempt).
    marketing_per_day: int = Field(default=1, ge=0, le=100)
    marketing_per_week: int = Field(default=3, ge=0, le=100)
    # WeChat lets a service account reach each follower by mass send 4 times a month.
    mass_per_month: int = Field(default=4, ge=0, le=4)
    # Openids per mass send (WeChat takes 2 to 10,000).
    mass_batch_size: int = Field(default=10_000, ge=2, le=10_000)

    @field_validator("templates")
    @classmethod
    def _known_purposes_and_fields(
        cls, templates: dict[str, TemplateConfig]
    ) -> dict[str, TemplateConfig]:
        # A field the push does not fill is refused at start-up rather than failing every such
        # push (payload:<field>). Purposes not in the table (a benchmark's, an extension's)
        # are taken as they are; the console's template page shows which purposes lack one.
        for purpose, template in templates.items():
            entry = BY_PURPOSE.get(purpose)
            if entry is None:
                continue
            if unknown := sorted(set(template.fields.values()) - set(entry.fields)):
                filled = ", ".join(entry.fields)
                raise ValueError(
                    f"templates.{purpose}: the push has no field {', '.join(unknown)} "
                    f"(it fills {filled})"
                )
        return templates


class HooksConfig(_Section):
    """Events for shop systems (bot/push/shop_hooks.py): signed POSTs to subscribers' URLs."""

    # Consumers of the hooks stream in each worker process.
    consumers: int = Field(default=1, ge=0, le=64)
    concurrency: int = Field(default=16, ge=1, le=1000)
    # A subscriber that has not answered in this long is tried again later.
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Retries back off from retry_base_seconds, doubling, up to retry_max_seconds, for
    # retry_hours after the event (or after a replay); then the delivery is failed.
    retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    retry_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    reclaim_idle_seconds: int = Field(default=60, ge=1, le=3600)
    # Subscribers' URLs may not reach loopback, link-local, private or other non-public
    # addresses (a request forgery into this network), checked at registration and again at
    # every connection; true only where the shop systems live on such a network.
    allow_private_targets: bool = False
