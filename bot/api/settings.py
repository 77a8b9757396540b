"""The ``[api]`` settings: the JSON API's callers and their limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiConfig(_Section):
    """The JSON API's callers: each bearer token, by name, and what each may send."""

    token: SecretStr = Field(min_length=16)
    # More callers with tokens of their own (name = token), limited and logged apart, e.g.
    # {erp = "...", pos = "..."}; `token` is the caller named "default".
    tokens: dict[str, SecretStr] = {}
    # Requests a minute per token, in bursts of up to rate_burst; 0: unlimited.
    rate_per_minute: float = Field(default=1200.0, ge=0)
    rate_burst: int = Field(default=200, ge=1)
    # Callers that may approve campaigns, each bound to one staff member (caller = username),
    # e.g. {alice_tool = "alice"}: approving is a person's act, so such a token is that
    # person's credential, and the staff member's role and status decide as in the console.
    # No other caller approves; the shared `default` token can never be bound.
    approvers: dict[str, str] = {}

    @field_validator("tokens")
    @classmethod
    def _long_tokens(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in tokens.items():
            if len(token.get_secret_value()) < 16:
                raise ValueError(f"{name}: a token needs at least 16 characters")
        return tokens

    @model_validator(mode="after")
    def _approvers_are_own_callers(self) -> ApiConfig:
        for caller, username in self.approvers.items():
            if caller not in self.tokens:
                raise ValueError(f"approvers: {caller} must be a caller of its own in [api] tokens")
            if not 1 <= len(username) <= 32:
                raise ValueError(f"approvers: {caller} must name a staff username")
        return self

    def callers(self) -> dict[str, bytes]:
        """Each caller's name and the Authorization header that identifies it."""
        named = {"default": self.token, **self.tokens}
        return {name: f"Bearer {t.get_secret_value()}".encode() for name, t in named.items()}
