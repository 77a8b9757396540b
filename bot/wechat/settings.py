"""The ``[wechat]`` settings: the account, its keys, and how the webhook and client behave."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeChatConfig(_Section):
    appid: str = Field(min_length=1)
    secret: SecretStr = Field(min_length=1)
    token: SecretStr = Field(min_length=3, max_length=32)
    encoding_aes_key: SecretStr = SecretStr("")
    allow_plaintext: bool = False
    api_base_url: str = "https://api.weixin.qq.com"
    # WeChat's web authorisation page (the member centre's sign-in); tests point it elsewhere.
    oauth_base_url: str = "https://open.weixin.qq.com"
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

    @field_validator("api_base_url", "oauth_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def safe_mode(self) -> bool:
        """Safe (AES) mode is on when an EncodingAESKey is configured."""
        return bool(self.encoding_aes_key.get_secret_value())
