"""Per-community configuration: ladder threshold, crisis resources, moderators, mod-log channel.

Loaded from a TOML file (``THREADGUARD_COMMUNITIES_FILE``); a ``[default]`` table applies to every
community that has no table of its own. See ``config/communities.example.toml``.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.errors import ConfigurationError

DEFAULT_CRISIS_RESOURCES = (
    "If you are thinking about harming yourself or someone else, please reach out now: in the US call "
    "or text 988 (Suicide & Crisis Lifeline); in the UK and Ireland call Samaritans on 116 123; "
    "elsewhere see https://findahelpline.com. If anyone is in immediate danger, call your local "
    "emergency number."
)


#: The placeholders each overridable text may use (``{name}``); anything else is refused at start-up.
TEXT_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "warning": frozenset({"category", "redirects"}),
    "freeze_notice": frozenset({"category", "place"}),
    "freeze_notice_user": frozenset({"place"}),
    "frozen_reminder": frozenset({"place"}),
    "reopened": frozenset({"place"}),
}


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses; raises ``ValueError`` for a malformed one (``{``, ``{0}``, ``{a.b}``)."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}}} is not a plain name")
        names.add(name)
    return names


class CommunityTexts(BaseModel):
    """Words the engine posts, overridden for one community (its language, its tone). Unset: the
    built-in English text. Placeholders: see ``TEXT_PLACEHOLDERS``; ``{place}`` is "thread" or
    "conversation" (a Discord DM has no threads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: str | None = Field(default=None, min_length=1, max_length=1500)
    freeze_notice: str | None = Field(default=None, min_length=1, max_length=1500)
    freeze_notice_user: str | None = Field(default=None, min_length=1, max_length=1500)
    frozen_reminder: str | None = Field(default=None, min_length=1, max_length=1500)
    reopened: str | None = Field(default=None, min_length=1, max_length=1500)

    @model_validator(mode="after")
    def _known_placeholders(self) -> CommunityTexts:
        for name, allowed in TEXT_PLACEHOLDERS.items():
            template = getattr(self, name)
            if template is None:
                continue
            try:
                used = placeholders(template)
            except ValueError as exc:
                raise ValueError(f"texts.{name}: {exc}") from exc
            unknown = used - allowed
            if unknown:
                names = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
                raise ValueError(f"texts.{name} uses {', '.join('{' + u + '}' for u in sorted(unknown))}; "
                                 f"it may use: {names}")
        return self


class CommunityLimits(BaseModel):
    """What members may use and what the bot may cost in one community (each 0: no such limit). Members
    who are exempt (and every thread flagged at risk) are never limited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Messages one member may send per minute, across the community's threads.
    messages_per_minute: int = Field(default=0, ge=0, le=10_000)
    #: Messages a member may send at once before the per-minute rate applies (0: as many as per minute).
    burst: int = Field(default=0, ge=0, le=10_000)
    #: Tokens (input, output, cache writes and reads, as the API bills them) one member may use per UTC day.
    tokens_per_day: int = Field(default=0, ge=0, le=1_000_000_000)
    #: What the community may spend per UTC day, in US dollars at the configured prices.
    daily_spend_usd: float = Field(default=0.0, ge=0, le=1_000_000)
    #: The community's moderators are exempt.
    exempt_moderators: bool = True
    #: Discord role ids and platform user ids that are exempt.
    exempt_roles: tuple[str, ...] = ()
    exempt_users: tuple[str, ...] = ()
    #: What happens to a message over a limit: ``tell`` (it is not answered; the member is told to send it
    #: again then) or ``answer_at_reset`` (it is kept and answered when the limit resets, in order).
    over_limit: Literal["tell", "answer_at_reset"] = "tell"

    @property
    def member_limited(self) -> bool:
        return bool(self.messages_per_minute or self.tokens_per_day)

    @property
    def any(self) -> bool:
        return self.member_limited or self.daily_spend_usd > 0

    @property
    def bucket(self) -> int:
        """How many messages a member may send at once."""
        return self.burst or self.messages_per_minute

class ChannelConfig(BaseModel):
    """What one channel sets for itself; unset: the community's. Nothing here touches the safety rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Appended to the system prompt in this channel (after the fixed rules, so they keep their place).
    persona: str | None = Field(default=None, min_length=1, max_length=2000)
    #: The Messages API model answering in this channel (``claude-…``).
    model: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")


class CommunityConfig(BaseModel):
    """How threadguard behaves in one community (a Discord guild, a Slack team, the console)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Redirections before the explicit warning; an abuse end is possible only after it.
    threshold: int = Field(default=3, ge=1, le=20)
    crisis_resources: str = DEFAULT_CRISIS_RESOURCES
    #: Channel id that receives one post per case.
    mod_log_channel: str | None = None
    #: Discord role id whose members may use moderator commands (besides Manage Messages).
    moderator_role: str | None = None
    #: Platform user ids allowed to use moderator commands (Slack; Discord in addition to roles).
    moderators: tuple[str, ...] = ()
    #: Slack user group id whose members are moderators.
    moderator_group: str | None = None
    #: Channel ids the bot answers in; empty means every channel it can see.
    allowed_channels: tuple[str, ...] = ()
    #: Seconds between two reminders posted into the same frozen thread.
    frozen_reminder_cooldown: int = Field(default=300, ge=0)
    #: Repeat policy (off with 0): after this many ended threads within ``repeat_days``, a member's
    #: conversations start already warned (the warning comes with the first redirection).
    repeat_ends: int = Field(default=0, ge=0, le=100)
    repeat_days: int = Field(default=30, ge=1, le=365)
    #: Post a private mod-log alert when the model flags that a member may be at risk.
    risk_alerts: bool = False
    #: Attach the transcript to risk alerts (off: the alert carries only the case link).
    risk_alert_transcript: bool = False
    #: The moderators' dashboard (``https://mod.example.org``): mod-log alerts link to the case there.
    dashboard_url: str | None = None
    #: Overrides of the warning, freeze notice, reminder and reopen notice (crisis resources: above).
    texts: CommunityTexts = CommunityTexts()
    #: Per-member rate and token limits, the daily spend ceiling, and who is exempt (all off by default).
    limits: CommunityLimits = CommunityLimits()
    #: A persona note and a model for every channel of the community that sets none of its own.
    persona: str | None = Field(default=None, min_length=1, max_length=2000)
    model: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    #: Per channel id: a persona note and a model of its own (``[community.<id>.channels.<channel>]``).
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)

    def channel(self, channel: str) -> ChannelConfig:
        """The channel's persona note and model, each inherited from the community when unset."""
        own = self.channels.get(channel)
        if own is None:
            return ChannelConfig(persona=self.persona, model=self.model)
        return ChannelConfig(persona=own.persona or self.persona, model=own.model or self.model)


class Communities:
    """Looks up the configuration for a community id, falling back to the defaults.

    The file's tables are the seed; settings saved on the dashboard replace a community's seed while the
    process runs (``replace_saved``, swapped in one assignment: every holder of this object sees them)."""

    def __init__(self, default: CommunityConfig | None = None,
                 overrides: dict[str, CommunityConfig] | None = None) -> None:
        self.default = default or CommunityConfig()
        self._seed = dict(overrides or {})
        self._overrides = dict(self._seed)

    def get(self, community: str) -> CommunityConfig:
        return self._overrides.get(community, self.default)

    def seed(self, community: str) -> CommunityConfig:
        """What the file says for the community (its table, or the defaults)."""
        return self._seed.get(community, self.default)

    def known(self) -> list[str]:
        return sorted(self._overrides)

    def replace_saved(self, saved: dict[str, CommunityConfig]) -> None:
        self._overrides = {**self._seed, **saved}

    @classmethod
    def from_file(cls, path: Path | None) -> Communities:
        if path is None:
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read communities file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"communities file {path} is not valid TOML: {exc}") from exc
        return cls.from_mapping(raw, source=str(path))

    @classmethod
    def from_mapping(cls, raw: dict[str, object], source: str = "<mapping>") -> Communities:
        default_raw = raw.get("default", {})
        communities_raw = raw.get("community", {})
        if not isinstance(default_raw, dict) or not isinstance(communities_raw, dict):
            raise ConfigurationError(f"{source}: [default] and [community.<id>] must be tables")
        try:
            default = CommunityConfig(**default_raw)
            overrides = {
                str(cid): CommunityConfig.model_validate(_merged(default_raw, body))
                for cid, body in communities_raw.items()
            }
        except (ValidationError, TypeError) as exc:
            raise ConfigurationError(f"{source}: invalid community configuration: {exc}") from exc
        return cls(default, overrides)


def _merged(default: dict[str, object], body: object) -> dict[str, object]:
    """A community's table over the defaults; its ``texts`` and ``limits`` tables over the default ones, key
    by key."""
    if not isinstance(body, dict):
        raise TypeError("a [community.<id>] entry must be a table")
    merged = {**default, **body}
    for table in ("texts", "limits"):
        own_default, own = default.get(table), body.get(table)
        if isinstance(own_default, dict) and isinstance(own, dict):
            merged[table] = {**own_default, **own}
    return merged
