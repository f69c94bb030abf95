"""``DASHBOARD_*``: the moderators' web dashboard.

The session secret is required (no default): it keys the HMAC that derives CSRF tokens from sessions and
the hashes under which sessions are stored. Generate one with ``python -c "import secrets;
print(secrets.token_urlsafe(48))"``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    #: Failed sign-ins allowed for one account from one client in ``login_window_seconds``. One client
    #: gets ``max_login_failures * 5`` failures across accounts; one account ``max_login_failures * 10``
    #: across clients. Nothing locks out everyone at once.
    max_login_failures: int = Field(default=10, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    #: Addresses or networks of the reverse proxies in front of the dashboard (comma-separated, e.g.
    #: ``127.0.0.1,10.0.0.0/8``). Only a request from one of them has its ``X-Forwarded-For`` honoured.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    #: Seconds between two looks at a platform-signed-in person's rights (their roles, whether they are
    #: still a member): a removed role ends their access within this time. At most ten minutes.
    rights_recheck_seconds: float = Field(default=120.0, gt=0, le=600)
    #: Password accounts (operators, break-glass). Unset: on only when no platform sign-in is configured.
    password_signin: bool | None = None
    #: Discord's authorization page (tests point it at a local stand-in). The app's id and secret are
    #: ``DISCORD_CLIENT_ID`` / ``DISCORD_CLIENT_SECRET``; Slack's are ``SLACK_CLIENT_ID`` / ``SLACK_CLIENT_SECRET``.
    discord_authorize_url: str = "https://discord.com/oauth2/authorize"
    #: Sign in with Slack's authorization page.
    slack_authorize_url: str = "https://slack.com/openid/connect/authorize"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list | tuple):
            return value
        chosen = tuple(str(p).strip() for p in parts if str(p).strip())
        for part in chosen:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"DASHBOARD_TRUSTED_PROXIES: {part!r} is not an address or network") from exc
        return chosen

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("DASHBOARD_SESSION_SECRET must be at least 32 characters")
        return value
