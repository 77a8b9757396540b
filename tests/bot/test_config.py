"""Configuration: file, environment overrides, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[wechat]
appid = "wx1234"
secret = "s3cret-value"
token = "mytoken"
[api]
token = "0123456789abcdef0123"
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_example_config_is_valid() -> None:
    config = load_config(str(ROOT / "config.example.toml"), environ={})
    assert config.server.port == 8080
    assert config.database.url == "sqlite+aiosqlite:///data/bot.db"
    assert not config.wechat.safe_mode


def test_environment_overrides_any_key(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, GOOD),
        environ={
            "BOT_WECHAT__TOKEN": "fromenv",
            "BOT_SERVER__PORT": "9090",
            "BOT_DATABASE__URL": "postgresql://u:p@db.example/bot",
            "BOT_CHAT__KEYWORDS": '{"help": ["救命"]}',
            "UNRELATED": "x",
        },
    )
    assert config.wechat.token.get_secret_value() == "fromenv"
    assert config.server.port == 9090
    assert config.database.url == "postgresql+asyncpg://u:p@db.example/bot"
    assert config.chat.keywords == {"help": ["救命"]}


def test_config_file_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_CONFIG", _write(tmp_path, GOOD))
    assert load_config().wechat.appid == "wx1234"


def test_secrets_do_not_show_in_repr(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD), environ={})
    assert "s3cret-value" not in repr(config)
    assert "mytoken" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ('token = "mytoken"', "[wechat] token is required"),
        (
            'token = "mytoken"\nencoding_aes_key = "short"',
            "[wechat] encoding_aes_key must be 43 letters and digits (got 5 characters)",
        ),
        (
            'token = "mytoken"\n[database]\nurl = "not a url"',
            "[database] url cannot read 'not a url' as a database URL",
        ),
        (
            'token = "mytoken"\n[database]\nurl = "mysql://x/y"',
            "[database] url unsupported database 'mysql'",
        ),
        (
            'token = "mytoken"\n[server]\nport = 70000',
            "[server] port Input should be less than or equal to 65535",
        ),
        ('token = "mytoken"\n[server]\nport = "eighty"', "[server] port Input should be a valid"),
        ('token = "mytoken"\ncolour = "blue"', "[wechat] colour is not a known setting"),
        (
            'token = "mytoken"\n[redis]\nsentinels = ["10.0.0.1"]',
            "[redis] sentinels '10.0.0.1' is not host:port",
        ),
        (
            'token = "mytoken"\n[redis]\nurl = "redis://r:6379/0"\nsentinels = ["s:26379"]',
            "give url or sentinels, not both",
        ),
        # "24:00" ends a service day; no day starts there.
        (
            'token = "mytoken"\n[console]\nservice_hours_start = "24:00"',
            "[console] service_hours_start String should match pattern",
        ),
        # The shared token is never a person's: it cannot be bound to one to approve campaigns.
        (
            'token = "mytoken"\n[api.approvers]\ndefault = "boss"',
            "approvers: default must be a caller of its own in [api] tokens",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, change: str, expected: str) -> None:
    text = GOOD.replace('token = "mytoken"', "" if expected.endswith("required") else change)
    with pytest.raises(ConfigError) as raised:
        load_config(_write(tmp_path, text), environ={})
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[wechat\n"), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"), environ={})


def test_bad_config_stops_the_service_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _write(
        tmp_path, GOOD.replace('token = "mytoken"', 'token = "mytoken"\nencoding_aes_key = "abc"')
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", path, "serve"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            f"config error: {path}: [wechat] encoding_aes_key must be 43 letters and digits "
            "(got 3 characters)"
        )
    ]


def test_example_config_carries_every_programme_default() -> None:
    from models.rules import ProgrammeRules

    assert load_config(str(ROOT / "config.example.toml"), environ={}).programme == (
        ProgrammeRules()
    )
