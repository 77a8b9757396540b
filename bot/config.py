"""Configuration: TOML file plus ``BOT_<SECTION>__<KEY>`` environment overrides.

The file is chosen by ``--config``, then ``BOT_CONFIG``, then ``config.toml``, then
``config.example.toml``. Every problem is reported as one line naming the key.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

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

from bot.api.settings import ApiConfig
from bot.console.settings import ConsoleConfig
from bot.pages.settings import MemberCentreConfig
from bot.push.settings import DeliveryConfig, HooksConfig
from bot.wechat.settings import WeChatConfig
from handlers.settings import ChatConfig
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


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # WeChat's pushes on a port of their own (bot/wechat/listener.py), beside /wechat on
    # ``port``; the proxy in front sends /wechat there. None: /wechat on ``port`` only.
    webhook_port: int | None = Field(default=None, ge=1, le=65535)
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
    # With a rediss:// url: the CA certificate (PEM) the server's certificate must chain to,
    # when it is not one the system already trusts.
    tls_ca_file: str = ""
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
        if self.tls_ca_file:
            if not self.url.startswith("rediss://"):
                raise ValueError("tls_ca_file needs a rediss:// url")
            if not Path(self.tls_ca_file).is_file():
                raise ValueError(f"tls_ca_file {self.tls_ca_file!r} is not a file")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(h, int(p)) for h, _, p in (e.rpartition(":") for e in self.sentinels)]


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
    member_centre: MemberCentreConfig = MemberCentreConfig()
    logging: LoggingConfig = LoggingConfig()
    programme: ProgrammeRules = ProgrammeRules()
    source: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _priority_lane_defaults_to_the_top_tier(cls, data: Any) -> Any:
        """Unset, ``[console] priority_tiers`` is the programme's highest tier (diamond as
        shipped), so a brand that names its own tiers keeps a 专属客服 lane."""
        if not isinstance(data, dict):
            return data
        console, programme = data.get("console") or {}, data.get("programme") or {}
        if not isinstance(console, dict) or "priority_tiers" in console:
            return data
        tiers = programme.get("tiers") if isinstance(programme, dict) else None
        if not tiers or not isinstance(tiers, list):
            return data
        top = tiers[-1]
        code = top.get("code") if isinstance(top, dict) else getattr(top, "code", None)
        if not isinstance(code, str):
            return data  # the tier's own validation says what is wrong
        return {**data, "console": {**console, "priority_tiers": [code]}}

    @model_validator(mode="after")
    def _priority_tiers_known(self) -> Config:
        codes = {tier.code for tier in self.programme.tiers}
        unknown = [code for code in self.console.priority_tiers if code not in codes]
        if unknown:
            raise ValueError(f"console.priority_tiers: no tier {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _compensation_coupon_is_configured(self) -> Config:
        kind = self.console.compensation.coupon_kind
        if kind and self.programme.coupon_kind(kind) is None:
            raise ValueError(f"console.compensation.coupon_kind: no coupon kind {kind!r}")
        return self


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
