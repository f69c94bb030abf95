"""``SLACK_*`` settings: the tokens, the Web API endpoint, and where the bot may talk.

Per-workspace settings (mod-log channel, moderators, moderator user group, allowed channels) live in the
communities file (``config/communities.py``), keyed by Slack team id. The ``SLACK_MOD_LOG_CHANNEL``,
``SLACK_MODERATORS`` and ``SLACK_MODERATOR_GROUP`` variables are the fallback for a single workspace
whose communities entry does not set them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.communities import CommunityConfig
from config.errors import ConfigurationError

IdList = Annotated[tuple[str, ...], NoDecode]


#: The bot scopes the app asks for when a workspace installs it (the manifest in the README lists the same).
BOT_SCOPES = ("app_mentions:read", "channels:history", "groups:history", "im:history", "mpim:history",
              "chat:write", "commands", "files:read", "files:write", "usergroups:read", "users:read",
              "channels:read")


class SlackSettings(BaseSettings):
    """One workspace: ``SLACK_BOT_TOKEN``. Many workspaces: ``SLACK_CLIENT_ID``, ``SLACK_CLIENT_SECRET`` and
    ``SLACK_TOKEN_ENCRYPTION_KEY`` (each workspace installs the app with "Add to Slack"; its tokens live in
    Redis). Socket Mode needs ``SLACK_APP_TOKEN``, HTTP mode ``SLACK_SIGNING_SECRET``."""

    model_config = SettingsConfigDict(env_prefix="SLACK_", env_file=".env", extra="ignore")

    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    #: Web API base URL; the trailing slash matters (tests point it at a local stand-in).
    api_base_url: str = "https://slack.com/api/"
    #: Path of the HTTP events endpoint (events, slash commands and shortcuts all post here).
    http_path: str = "/slack/events"
    #: Channel ids the bot answers in, in every workspace (comma separated); empty means every channel.
    allowed_channels: IdList = ()
    allow_direct_messages: bool = True
    #: Fallbacks for a workspace whose communities entry does not name them.
    mod_log_channel: str | None = None
    moderators: IdList = ()
    moderator_group: str | None = None
    #: Minimum seconds between two steps (an update, an append) of a streaming answer.
    stream_edit_interval: float = Field(default=1.0, ge=0.0)
    #: Calls per minute per workspace, shared by every process through Redis, of ``chat.update`` (Slack's
    #: Tier 3 allows about 50), of ``chat.startStream`` and ``chat.stopStream`` each (Tier 2: about 20) and of
    #: ``chat.appendStream`` (Tier 4: about 100); and how many of each may go back to back.
    update_budget_per_minute: float = Field(default=50.0, gt=0)
    stream_budget_per_minute: float = Field(default=20.0, gt=0)
    append_budget_per_minute: float = Field(default=100.0, gt=0)
    update_burst: int = Field(default=3, ge=1)
    #: ``chat.postMessage`` per channel (Slack: "1 per second, short bursts >1 allowed") and per workspace
    #: (a limit Slack has but does not publish; about 1,000 a minute in bursts of 30 stays clear of what
    #: workspaces report, with room for calls arriving unevenly: lower it if a workspace sees 429s).
    channel_posts_per_minute: float = Field(default=60.0, gt=0)
    channel_post_burst: int = Field(default=3, ge=1)
    posts_per_minute: float = Field(default=1000.0, gt=0)
    post_burst: int = Field(default=30, ge=1)
    #: Answers use Slack's streaming methods where a channel takes them (else posts and updates).
    streaming: bool = True
    #: Slots of a budget an intermediate step (an update, an append) leaves for answers' last calls.
    stream_headroom: int = Field(default=1, ge=0)
    #: Characters per Slack message before an answer continues in the next one.
    message_limit: int = Field(default=3500, ge=200, le=39000)
    #: Follow-up tasks (reminders, edits) run at the same time after the acknowledgement.
    max_concurrent_events: int = Field(default=16, ge=1)
    #: Follow-up tasks waiting; beyond this one is skipped with a WARNING line (counts, no traceback).
    max_pending_events: int = Field(default=512, ge=1)
    #: Seconds to let work in progress finish when the bot shuts down.
    shutdown_grace: float = Field(default=30.0, ge=0.0)
    #: Seconds between two looks at the notices other processes queued (a dashboard reopen) while the worker
    #: cannot hear the wake-up channel (it relays them as soon as it hears of them otherwise).
    notice_poll_interval: float = Field(default=2.0, gt=0.0)
    #: Web API retries on 429 (obeying Retry-After), on 500/503, and on connection errors.
    rate_limit_retries: int = Field(default=3, ge=0, le=10)
    server_error_retries: int = Field(default=2, ge=0, le=10)
    connection_error_retries: int = Field(default=2, ge=0, le=10)
    #: Seconds between two retries of a server or connection error.
    retry_interval: float = Field(default=1.0, ge=0.0)
    #: Seconds a Web API call may take.
    api_timeout: int = Field(default=30, ge=1)

    #: The app's credentials (Basic Information -> App Credentials): with both set, workspaces install the
    #: app through ``/slack/install`` and each is served with its own token.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: Fernet key(s), comma separated: the first encrypts the tokens kept in Redis, each one decrypts.
    token_encryption_key: SecretStr | None = None
    #: Bot scopes asked for at installation.
    scopes: IdList = BOT_SCOPES
    #: The redirect URL registered with the app (``https://bot.example.org/slack/oauth_redirect``); unset,
    #: Slack uses the app's only registered one.
    redirect_uri: str | None = None
    #: Slack's authorization page (tests point it at a local stand-in).
    authorization_url: str = "https://slack.com/oauth/v2/authorize"
    install_path: str = "/slack/install"
    redirect_uri_path: str = "/slack/oauth_redirect"
    #: Socket Mode has no HTTP listener of its own: the install pages are served on this port (0: none).
    install_port: int = Field(default=3000, ge=0, le=65535)
    #: Seconds an install link (its state) stays valid.
    state_ttl: int = Field(default=600, ge=30)
    #: Rotating tokens (token rotation on): renewed this many seconds before they expire, by one process.
    token_refresh_before: float = Field(default=7200.0, ge=1.0)
    #: Seconds a process reuses an installation it read from Redis (any process's change drops it at once).
    installation_cache_seconds: float = Field(default=5.0, ge=0.0)

    @property
    def multi_workspace(self) -> bool:
        """True when workspaces install the app themselves (client id and secret set)."""
        return bool(self.client_id and self.client_secret and self.client_secret.get_secret_value().strip())

    def require_token_key(self) -> str:
        return self._secret(self.token_encryption_key, "SLACK_TOKEN_ENCRYPTION_KEY")

    def require_client_secret(self) -> str:
        return self._secret(self.client_secret, "SLACK_CLIENT_SECRET")

    @field_validator("allowed_channels", "moderators", "scopes", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return value

    @staticmethod
    def _secret(value: SecretStr | None, name: str) -> str:
        if value is None or not value.get_secret_value().strip():
            raise ConfigurationError(f"{name} is not set")
        return value.get_secret_value().strip()

    def require_bot_token(self) -> str:
        """The token, or a configuration error naming the variable (never the value)."""
        return self._secret(self.bot_token, "SLACK_BOT_TOKEN")

    def require_app_token(self) -> str:
        return self._secret(self.app_token, "SLACK_APP_TOKEN")

    def require_signing_secret(self) -> str:
        return self._secret(self.signing_secret, "SLACK_SIGNING_SECRET")

    def channel_allowed(self, channel_id: str, community: CommunityConfig) -> bool:
        """Both the global list and the workspace's own list must allow the channel (empty allows all)."""
        if self.allowed_channels and channel_id not in self.allowed_channels:
            return False
        return not community.allowed_channels or channel_id in community.allowed_channels

    def mod_log_for(self, community: CommunityConfig) -> str | None:
        return community.mod_log_channel or self.mod_log_channel

    def moderators_for(self, community: CommunityConfig) -> tuple[str, ...]:
        return community.moderators or self.moderators

    def moderator_group_for(self, community: CommunityConfig) -> str | None:
        return community.moderator_group or self.moderator_group
