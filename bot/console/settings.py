"""The ``[console]`` settings: hand-over to people and the console they answer in."""

from __future__ import annotations

from datetime import time
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from models.conversations import QueuePriority


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompensationLimit(_Section):
    """What one role may give in compensation per staff member and local day (None: no limit)."""

    coupons: int | None = Field(default=None, ge=0, le=10_000)
    points: int | None = Field(default=None, ge=0, le=100_000_000)


class CompensationConfig(_Section):
    """``[console.compensation]``: the coupon kind agents give as compensation ("" for none)
    and each role's daily limits; a role not in ``limits`` may not compensate."""

    coupon_kind: str = "cash_10"
    limits: dict[Literal["agent", "marketer", "admin"], CompensationLimit] = {
        "agent": CompensationLimit(coupons=3, points=500),
        "admin": CompensationLimit(),
    }

    def limit_for(self, role: str) -> CompensationLimit | None:
        """The role's daily limits, or None when the role may not compensate."""
        return self.limits.get(role)  # type: ignore[call-overload]


class ConsoleConfig(_Section):
    """Customer service: the hand-over to people and the console they answer in."""

    # "console": staff answer in /console/; "wechat": WeChat's own customer-service system
    # takes the conversation (the transfer_customer_service reply).
    handoff: Literal["console", "wechat"] = "console"
    # "auto": queued conversations go to the least-loaded online agent; "claim": agents pick.
    assignment: Literal["auto", "claim"] = "auto"
    max_open_per_agent: int = Field(default=5, ge=1, le=100)
    # A claimed conversation with no reply this long goes back to the queue.
    claim_timeout_minutes: int = Field(default=10, ge=1, le=24 * 60)
    # An assigned conversation silent this long returns to the bot (as WeChat's own does).
    idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Queued longer than this is overdue (seed: picked up within 1 hour).
    pickup_target_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # Tiers served first, highest first (codes of [programme] tiers): the queue orders by
    # these, then by waiting time. A tier listed here has the 专属客服 lane (``has_priority_lane``).
    # Unset: the programme's highest tier (bot/config.py).
    priority_tiers: list[str] = ["diamond"]
    # Agents (usernames) who get the first priority tier's conversations first when online.
    dedicated_agents: list[str] = []
    # The service day ("business hours"): outside it a member asking for a person is told when
    # someone will answer, and the conversation stays queued for the morning.
    service_hours_start: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # "24:00" ends the day: "00:00" to "24:00" is round the clock.
    service_hours_end: str = Field(default="21:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")
    session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # Who approves a marketer's campaign: "admin", or also "another_marketer" (never oneself).
    campaign_approval: Literal["admin", "another_marketer"] = "admin"
    # Failed logins per username (and per address) before login pauses for login_pause_minutes.
    login_failures: int = Field(default=5, ge=1, le=100)
    login_pause_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Proxies whose X-Forwarded-For is believed (addresses or networks): the caller is the
    # right-most hop that is not one of them. Empty: the peer's address, whatever the header.
    trusted_proxies: list[IPvAnyNetwork] = [IPv4Network("127.0.0.1/32"), IPv6Network("::1/128")]
    compensation: CompensationConfig = CompensationConfig()

    @property
    def priority(self) -> QueuePriority:
        """The queue's priority rules (models/conversations.py)."""
        return QueuePriority(tuple(self.priority_tiers), tuple(self.dedicated_agents))

    def has_priority_lane(self, tier: str) -> bool:
        """Whether members of ``tier`` are served first: the tier benefit 专属客服."""
        return self.priority.has_lane(tier)

    @property
    def service_hours(self) -> tuple[time, time]:
        """Start and end of the service day; an end of "24:00" is ``time.max``."""
        end = self.service_hours_end
        return time.fromisoformat(self.service_hours_start), (
            time.max if end == "24:00" else time.fromisoformat(end)
        )
