"""Configuration: TOML file plus ``BOT_<SECTION>__<KEY>`` environment overrides.

The file is chosen by ``--config``, then ``BOT_CONFIG``, then ``config.toml``, then
``config.example.toml``. Every problem is reported as one line naming the key.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from models.rules import ProgrammeRules
from scheduler.settings import SchedulerConfig

ENV_PREFIX = "BOT_"
DEFAULT_FILES = ("config.toml", "config.example.toml")

# Async drivers the service runs on, and what a bare scheme means.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeChatConfig(_Section):
    appid: str = Field(min_length=1)
    secret: SecretStr = Field(min_length=1)
    token: SecretStr = Field(min_length=3, max_length=32)
    encoding_aes_key: SecretStr = SecretStr("")
    allow_plaintext: bool = False
    api_base_url: str = "https://api.weixin.qq.com"
    token_endpoint: str = Field(default="stable", pattern="^(stable|classic)$")
    api_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    api_max_attempts: int = Field(default=3, ge=1, le=10)
    api_backoff_seconds: float = Field(default=0.2, ge=0, le=30)
    reply_budget_seconds: float = Field(default=4.0, gt=0, lt=5)
    timestamp_tolerance_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=65536, ge=1024)
    dedupe_ttl_seconds: int = Field(default=300, ge=30)

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_is_43_chars(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value()
        if key and (len(key) != 43 or not key.isalnum()):
            raise ValueError(f"must be 43 letters and digits (got {len(key)} characters)")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def safe_mode(self) -> bool:
        """Safe (AES) mode is on when an EncodingAESKey is configured."""
        return bool(self.encoding_aes_key.get_secret_value())


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # The service's address as members' phones reach it, for links in pushes (the annual
    # recap's page); behind a proxy, its public https:// address.
    public_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://[^\s/?#]+(/\S*)?$")


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///data/bot.db"
    # PostgreSQL connections kept open per process; connections beyond the pool are opened
    # and closed per use, which costs a backend start each time, so size it for the load.
    pool_size: int = Field(default=32, ge=1, le=500)
    max_overflow: int = Field(default=8, ge=0, le=500)

    @field_validator("url")
    @classmethod
    def _async_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"cannot read {value!r} as a database URL") from None
        driver = _ASYNC_DRIVERS.get(url.drivername)
        if driver is None:
            raise ValueError(f"unsupported database {url.drivername!r} (use sqlite or postgresql)")
        return url.set(drivername=driver).render_as_string(hide_password=False)


class RedisConfig(_Section):
    """One Redis: ``url``, or empty for the embedded server; or the master Redis Sentinel
    names (``sentinels`` and ``sentinel_service``), followed through failovers."""

    url: str = ""
    embedded_path: str = "data/redis.db"
    # "host:port" of each sentinel; with these, url stays empty.
    sentinels: list[str] = []
    sentinel_service: str = Field(default="mymaster", min_length=1, max_length=64)
    # With sentinels: the master's password and database, and the sentinels' own password.
    password: SecretStr = SecretStr("")
    db: int = Field(default=0, ge=0, le=15)
    sentinel_password: SecretStr = SecretStr("")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be empty (embedded Redis) or a redis://, rediss:// or unix:// URL"
            )
        return value

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdecimal() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> RedisConfig:
        if self.sentinels and self.url:
            raise ValueError("give url or sentinels, not both")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(h, int(p)) for h, _, p in (e.rpartition(":") for e in self.sentinels)]


class ApiConfig(_Section):
    """The JSON API's callers: each bearer token, by name, and what each may send."""

    token: SecretStr = Field(min_length=16)
    # More callers with tokens of their own (name = token), limited and logged apart, e.g.
    # {erp = "...", pos = "..."}; `token` is the caller named "default".
    tokens: dict[str, SecretStr] = {}
    # Requests a minute per token, in bursts of up to rate_burst; 0: unlimited.
    rate_per_minute: float = Field(default=1200.0, ge=0)
    rate_burst: int = Field(default=200, ge=1)

    @field_validator("tokens")
    @classmethod
    def _long_tokens(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in tokens.items():
            if len(token.get_secret_value()) < 16:
                raise ValueError(f"{name}: a token needs at least 16 characters")
        return tokens

    def callers(self) -> dict[str, bytes]:
        """Each caller's name and the Authorization header that identifies it."""
        named = {"default": self.token, **self.tokens}
        return {name: f"Bearer {t.get_secret_value()}".encode() for name, t in named.items()}


class ChatConfig(_Section):
    """Words members type, mapped to what they ask for."""

    keywords: dict[str, list[str]] = {
        "help": ["帮助", "菜单", "help", "?"],
        "points": ["积分"],
        "tier": ["等级", "会员"],
        "benefits": ["权益"],
        "coupons": ["我的券", "优惠券", "券"],
        "recap": ["年度回顾", "年度报告"],
        "referral": ["推荐", "邀请"],
        "my_referrals": ["我的推荐"],
        "human": ["人工", "客服"],
    }
    menu_keys: dict[str, str] = {
        "MENU_HELP": "help",
        "MENU_POINTS": "points",
        "MENU_TIER": "tier",
        "MENU_BENEFITS": "benefits",
        "MENU_COUPONS": "coupons",
        "MENU_REFERRAL": "referral",
        "MENU_MY_REFERRALS": "my_referrals",
        "MENU_HUMAN": "human",
    }


class TemplateConfig(_Section):
    """A template message for one purpose: its id, and which of the push's fields fills each
    of the template's keys (e.g. ``{first = "title", keyword1 = "tier", remark = "note"}``)."""

    template_id: str = Field(min_length=1)
    fields: dict[str, str] = Field(min_length=1)
    url: str = ""


class DeliveryConfig(_Section):
    """The push pipeline (bot/outbox.py)."""

    # Consumers in this process; `python -m bot serve --role worker` runs more on their own.
    workers: int = Field(default=1, ge=0, le=64)
    concurrency: int = Field(default=32, ge=1, le=1000)
    # Service notifications with a template configured go as template messages.
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
    service_hours_start: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    service_hours_end: str = Field(default="21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # Who approves a marketer's campaign: "admin", or also "another_marketer" (never oneself).
    campaign_approval: Literal["admin", "another_marketer"] = "admin"
    # Failed logins per username (and per address) before login pauses for login_pause_minutes.
    login_failures: int = Field(default=5, ge=1, le=100)
    login_pause_minutes: int = Field(default=15, ge=1, le=24 * 60)

    @property
    def service_hours(self) -> tuple[time, time]:
        return time.fromisoformat(self.service_hours_start), time.fromisoformat(
            self.service_hours_end
        )


class HooksConfig(_Section):
    """Events for shop systems (bot/shop_hooks.py): signed POSTs to subscribers' URLs."""

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


class LoggingConfig(_Section):
    level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")


class Config(_Section):
    wechat: WeChatConfig
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    api: ApiConfig
    chat: ChatConfig = ChatConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    console: ConsoleConfig = ConsoleConfig()
    hooks: HooksConfig = HooksConfig()
    logging: LoggingConfig = LoggingConfig()
    programme: ProgrammeRules = ProgrammeRules()
    source: str = Field(default="", exclude=True)


def find_config_file(explicit: str | None = None) -> Path:
    """Return the configuration file to read, by the documented order of precedence."""
    chosen = explicit or os.environ.get("BOT_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {chosen} does not exist")
        return path
    for name in DEFAULT_FILES:
        if Path(name).is_file():
            return Path(name)
    raise ConfigError("no config file: pass --config, set BOT_CONFIG, or create config.toml")


def _env_value(raw: str) -> Any:
    # Lists and tables can be given as JSON; everything else stays a string for pydantic.
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Overlay ``BOT_<SECTION>__<KEY>`` variables on the parsed file."""
    merged = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in data.items()
    }
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if not section or not key:
            continue
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: [{section}] is not a table")
        table[key] = _env_value(raw)
    return merged


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]" if loc else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not a known setting"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {where} {message}{suffix}".strip()


def load_config(path: str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read, overlay and validate the configuration; raise ConfigError with one clear line."""
    file = find_config_file(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    data = apply_env_overrides(data, dict(os.environ if environ is None else environ))
    try:
        return Config.model_validate({**data, "source": str(file)})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(file))) from None
