"""A community's settings as its admins change them: checked against the safety floor, saved as a new
version with who, when and each changed field's old and new value, restored from any version, exported
and imported as TOML, and applied live in every process.

The file on disk (``THREADGUARD_COMMUNITIES_FILE``) stays the seed and the operator's defaults: until a
community's admins save, its settings are the file's. Live: ``refresh`` costs one GET of a revision counter
when nothing changed; a worker calls it from a background loop (``WorkerSettings.settings_interval``) and
swaps the ``Communities`` object's contents in place, so a turn never reads settings from Redis.
"""

from __future__ import annotations

import logging
import time
import tomllib
from typing import Any

import tomli_w
from pydantic import ValidationError

from bot.store.community_settings import CommunitySettingsStore
from config.communities import Communities, CommunityConfig
from config.errors import ThreadguardError

log = logging.getLogger(__name__)

#: The ladder's threshold as admins may set it: never a warning at the first redirection, never so late
#: that the ladder stops meaning anything. (The operator's file allows a wider range.)
THRESHOLD_BOUNDS = (2, 10)


class SettingsRejected(ThreadguardError):
    """Settings an admin asked for that cannot be saved; ``user_message`` says why, in plain words."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class SettingsConflict(SettingsRejected):
    """Someone else saved the community's settings since the form was opened."""

    def __init__(self) -> None:
        super().__init__("Someone else changed these settings since you opened the page. Nothing was saved: "
                         "reload the page and make your change again.")


def check_floor(config: CommunityConfig) -> None:
    """Refuse settings that would weaken the safety floor (the rules themselves are not settings)."""
    low, high = THRESHOLD_BOUNDS
    if not low <= config.threshold <= high:
        raise SettingsRejected(f"The warning threshold must be between {low} and {high} redirections.")
    if not config.crisis_resources.strip():
        raise SettingsRejected("Crisis resources cannot be empty: they are posted when a member may be at risk.")


def validated(values: dict[str, Any]) -> CommunityConfig:
    try:
        config = CommunityConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsRejected(f"{where}: {first['msg']}") from None
    check_floor(config)
    return config


def flat(config: CommunityConfig) -> dict[str, Any]:
    """One entry per setting a person changes (``texts.warning``, ``channels.<id>``, ``limits.burst``), JSON
    values."""
    data = config.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("texts", "channels", "limits"):
            for sub, inner in value.items():
                out[f"{name}.{sub}"] = inner
        else:
            out[name] = value
    return out


def changes(old: CommunityConfig, new: CommunityConfig) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for every field whose value differs."""
    before, after = flat(old), flat(new)
    return {name: [before.get(name), after.get(name)] for name in sorted(before.keys() | after.keys())
            if before.get(name) != after.get(name)}


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None and v != {}}
    return value


class CommunitySettings:
    """The use cases on a community's settings, for the dashboard and every worker."""

    def __init__(self, store: CommunitySettingsStore, communities: Communities) -> None:
        self.store = store
        self.communities = communities
        self._revision: int | None = None

    async def effective(self, community: str) -> tuple[int, CommunityConfig]:
        """The community's settings now and their version (0: the file's, nothing saved yet)."""
        stored = await self.store.current(community)
        if stored is None:
            return 0, self.communities.seed(community)
        return stored.version, CommunityConfig.model_validate(stored.settings)

    async def save(self, community: str, values: dict[str, Any], *, who: str, expected_version: int,
                   restored_from: int | None = None) -> int:
        """Save ``values`` (the whole community's settings) as a new version; returns its number, or the
        current one when nothing changed. Raises ``SettingsRejected`` (``SettingsConflict``)."""
        new = validated(values)
        version, old = await self.effective(community)
        if version != expected_version:
            raise SettingsConflict()
        changed = changes(old, new)
        if not changed:
            return version
        record: dict[str, Any] = {"who": who, "at": time.time(), "changes": changed}
        if restored_from is not None:
            record["restored_from"] = restored_from
        settings = new.model_dump(mode="json")
        record["settings"] = settings
        number = await self.store.save(community, settings, record, expected_version=expected_version)
        if not number:
            raise SettingsConflict()
        log.info("community %s: settings version %s saved by %s (%s)", community, number, who,
                 ", ".join(changed))
        await self.refresh()
        return number

    async def restore(self, community: str, number: int, *, who: str, expected_version: int) -> int:
        """Version ``number`` (0: the operator's file) as a new version."""
        if number == 0:
            settings: dict[str, Any] = self.communities.seed(community).model_dump(mode="json")
        else:
            record = await self.store.version(community, number)
            if record is None:
                raise SettingsRejected("There is no such version of these settings.")
            settings = record["settings"]
        return await self.save(community, settings, who=who, expected_version=expected_version,
                               restored_from=number)

    async def history(self, community: str) -> list[dict[str, Any]]:
        return await self.store.history(community)

    async def export_toml(self, community: str) -> str:
        _, config = await self.effective(community)
        body = _without_none(config.model_dump(mode="json"))
        return tomli_w.dumps({"community": {community: body}})

    async def import_toml(self, community: str, text: str, *, who: str, expected_version: int) -> int:
        """Settings from an export (``[community.<id>]``; a file of another community's is refused)."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise SettingsRejected("That file is not valid TOML.") from None
        tables = raw.get("community")
        if not isinstance(tables, dict) or set(tables) != {community} or not isinstance(tables[community], dict):
            raise SettingsRejected(f"The file must hold exactly one table, [community.\"{community}\"].")
        return await self.save(community, tables[community], who=who, expected_version=expected_version)

    async def refresh(self) -> bool:
        """Apply every saved community's settings if anything was saved since the last look (one GET when
        nothing was). Returns True when it reloaded."""
        revision = await self.store.revision()
        if revision == self._revision:
            return False
        saved: dict[str, CommunityConfig] = {}
        for community in await self.store.communities():
            stored = await self.store.current(community)
            if stored is None:
                continue
            try:
                saved[community] = CommunityConfig.model_validate(stored.settings)
            except ValidationError:
                log.warning("community %s: saved settings version %s do not validate; keeping the file's",
                            community, stored.version)
        self.communities.replace_saved(saved)
        if self._revision is not None:
            log.info("community settings reloaded (revision %s, %d communities with saved settings)",
                     revision, len(saved))
        self._revision = revision
        return True
