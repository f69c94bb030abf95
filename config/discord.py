"""``DISCORD_*`` settings: the bot token, the endpoints, and where the bot may talk.

Per-guild settings (mod-log channel, moderator role, allowed channels) live in the communities file
(``config/communities.py``), keyed by guild id.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.errors import ConfigurationError

IdList = Annotated[tuple[str, ...], NoDecode]
ShardIds = Annotated[tuple[int, ...], NoDecode]
SHARD_IDS_FORMAT = "shard numbers and ranges separated by commas, e.g. 0,1 or 2-3"


def parse_shard_ids(text: str) -> tuple[int, ...]:
    """``"0,1"``, ``"2-3"``, ``"0, 4-6"`` -> sorted distinct shard ids; ``ValueError`` names the bad part."""
    ids: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"DISCORD_SHARD_IDS: {part!r} is not a shard number or range ({SHARD_IDS_FORMAT})")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"DISCORD_SHARD_IDS: the range {part!r} runs backwards ({SHARD_IDS_FORMAT})")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def shard_problem(count: int | None, ids: tuple[int, ...]) -> str | None:
    """Why ``DISCORD_SHARD_COUNT`` and ``DISCORD_SHARD_IDS`` cannot run together, or ``None``."""
    if not ids:
        return None
    if not count:
        return ("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT set to the total number of shards across all "
                "processes (a number above 0: every process must agree on it)")
    outside = [i for i in ids if i >= count]
    if outside:
        return (f"DISCORD_SHARD_IDS names shard {', '.join(map(str, outside))}, but with DISCORD_SHARD_COUNT="
                f"{count} the shards are numbered 0 to {count - 1}")
    return None


class DiscordSettings(BaseSettings):
    """``DISCORD_TOKEN`` is required to run; everything else has a sensible default."""

    model_config = SettingsConfigDict(env_prefix="DISCORD_", env_file=".env", extra="ignore")

    token: SecretStr | None = None
    #: REST base, e.g. ``https://discord.com/api/v10`` (tests point it at a local stand-in).
    api_base_url: str = "https://discord.com/api/v10"
    #: The application's OAuth2 credentials (Developer Portal -> OAuth2): with both and the token set, the
    #: dashboard offers "Sign in with Discord".
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: Gateway websocket URL; with sharding, ``GET /gateway/bot`` may announce another one.
    gateway_url: str = "wss://gateway.discord.gg/"
    #: Guild ids the bot answers in (comma separated); empty means every guild it is in.
    allowed_guilds: IdList = ()
    #: Channel ids the bot answers in, in every guild (comma separated); empty means every channel.
    allowed_channels: IdList = ()
    allow_direct_messages: bool = True
    #: ``None``: one connection. A number: that many shards (``0`` lets Discord choose).
    shard_count: int | None = Field(default=None, ge=0)
    #: The shards this process runs (``0,1`` or ``2-3``), out of ``shard_count`` across every process;
    #: empty: all of them.
    shard_ids: ShardIds = ()
    #: Register the slash commands with Discord at start-up (a bulk overwrite).
    sync_commands: bool = True
    #: Minimum seconds between two edits of a streaming answer (Discord allows about 5 per 5 s).
    stream_edit_interval: float = Field(default=1.2, ge=0.0)
    #: Lock and archive a thread when the engine ends it (turn off to only post the notice).
    lock_ended_threads: bool = True
    #: Attempts to post one case to the mod-log channel before giving up (the case stays filed).
    modlog_attempts: int = Field(default=3, ge=1, le=10)
    modlog_retry_delay: float = Field(default=2.0, ge=0.0)
    #: Seconds the ``/end`` confirmation buttons stay valid (checked from the button itself, so a
    #: prompt still works across a bot restart within that time).
    confirm_timeout: float = Field(default=120.0, gt=0)
    #: Seconds between two looks at the notices other processes queued for Discord threads (a reopen on
    #: the moderators' dashboard: the bot unlocks the thread and posts the notice) while the worker cannot
    #: hear the wake-up channel (it relays them as soon as it hears of them otherwise).
    notice_poll_interval: float = Field(default=2.0, gt=0)

    @field_validator("allowed_guilds", "allowed_channels", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, int):
            return (str(value),)
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_shard_ids(value)
        if isinstance(value, int):
            return (value,)
        return value

    @model_validator(mode="after")
    def _check_shards(self) -> DiscordSettings:
        problem = shard_problem(self.shard_count, self.shard_ids)
        if problem:
            raise ValueError(problem)
        return self

    def require_shards(self) -> None:
        """A configuration error that says what is wrong with the shard settings (also for settings
        copied with ``model_copy``, which skips validation)."""
        problem = shard_problem(self.shard_count, self.shard_ids)
        if problem:
            raise ConfigurationError(problem)

    def require_token(self) -> str:
        """The token, or a configuration error that says which variable to set (never the value)."""
        if self.token is None or not self.token.get_secret_value().strip():
            raise ConfigurationError("DISCORD_TOKEN is not set")
        return self.token.get_secret_value().strip()

    def guild_allowed(self, guild_id: str) -> bool:
        return not self.allowed_guilds or guild_id in self.allowed_guilds

    def channel_allowed(self, channel_id: str) -> bool:
        return not self.allowed_channels or channel_id in self.allowed_channels
