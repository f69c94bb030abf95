"""``DASHBOARD_*``: the moderators' web dashboard.

The session secret is required (no default): it keys the HMAC that derives CSRF tokens from sessions and
the hashes under which sessions are stored. Generate one with ``python -c "import secrets;
print(secrets.token_urlsafe(48))"``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DASHBOARD_", env_file=".env", extra="ignore")

    session_secret: SecretStr
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: Send cookies only over HTTPS. Turn off only for a dashboard reached on localhost.
    cookie_secure: bool = True
    #: The address moderators open (``https://mod.example.org``) when a proxy sits in front; POSTs whose
    #: ``Origin`` differs are refused. Without it the request's own scheme and host are expected.
    public_url: str | None = None
    session_ttl_hours: float = Field(default=12.0, gt=0)
    page_size: int = Field(default=25, ge=1, le=500)
    #: Failed sign-ins allowed per account (and per client address) in ``login_window_seconds``.
    max_login_failures: int = Field(default=10, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("DASHBOARD_SESSION_SECRET must be at least 32 characters")
        return value
