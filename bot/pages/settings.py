"""The ``[member_centre]`` settings: the member centre's session, and its member codes."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from models.member_codes import CodeWindow


class MemberCentreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Signs members' session cookies and keys their member codes; shared by every process.
    # Empty: derived from [wechat] secret (rotating the AppSecret then signs everyone out).
    secret: SecretStr = SecretStr("")
    # A member stays signed in this long after WeChat's authorisation.
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # The authorisation round trip (WeChat's page and back) must finish within this.
    login_seconds: int = Field(default=300, ge=30, le=3600)
    # Member codes: a new one every code_seconds; one scanned as it turns still works for
    # code_grace_seconds; an order claims a resolved code within code_order_hours.
    code_seconds: int = Field(default=60, ge=2, le=600)
    code_grace_seconds: int = Field(default=15, ge=0, le=120)
    code_order_hours: int = Field(default=24, ge=1, le=24 * 7)

    @model_validator(mode="after")
    def _grace_within_step(self) -> MemberCentreConfig:
        if self.code_grace_seconds >= self.code_seconds:
            raise ValueError("code_grace_seconds must be shorter than code_seconds")
        return self

    @property
    def code_window(self) -> CodeWindow:
        return CodeWindow(self.code_seconds, self.code_grace_seconds, self.code_order_hours)

    def key(self, purpose: str, appsecret: SecretStr) -> bytes:
        """A key for one ``purpose`` ("session", "member-code"), derived from ``secret`` (or
        the AppSecret), so no two uses share a key."""
        root = (self.secret.get_secret_value() or appsecret.get_secret_value()).encode()
        return hmac.new(root, f"member-centre:{purpose}".encode(), hashlib.sha256).digest()
