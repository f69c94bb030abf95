"""slack_sdk's installation store and OAuth state store on Redis (slack_sdk ships file, SQLite, SQLAlchemy,
S3 and GCS stores, none for Redis).

The Redis part is ``bot.store.installations``; this module turns ``Installation`` and ``Bot`` into its
records and back. Bot and user tokens and their refresh tokens are encrypted (Fernet: AES-128-CBC with
an HMAC-SHA256) with ``SLACK_TOKEN_ENCRYPTION_KEY`` before they reach Redis; several comma-separated keys
let an operator rotate the key (the first encrypts, each decrypts). What was read is cached in the
process for a few seconds; every process drops a workspace's entry as soon as any process saves or
deletes that workspace (``InstallationRecords.follow_changes``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from slack_bolt.error import BoltError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.errors import ConfigurationError, StoreUnavailable
from bot.store.installations import InstallationRecords, InstallStates, workspace_key

log = logging.getLogger(__name__)

#: The fields of ``Installation`` and ``Bot`` that hold secrets.
SECRET_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")


class TokenCipher:
    """Encrypts the secret fields of a record; ``keys`` are Fernet keys, the first one encrypts."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigurationError("SLACK_TOKEN_ENCRYPTION_KEY is not set")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except ValueError:
            raise ConfigurationError("SLACK_TOKEN_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64 bytes; "
                                     "make one with: python -c 'from cryptography.fernet import Fernet; "
                                     "print(Fernet.generate_key().decode())')") from None

    def seal(self, fields: dict[str, Any]) -> str:
        sealed = dict(fields)
        for name in SECRET_FIELDS:
            if sealed.get(name):
                sealed[name] = self._fernet.encrypt(str(sealed[name]).encode()).decode()
        return json.dumps(sealed, separators=(",", ":"))

    def open(self, record: str) -> dict[str, Any]:
        fields: dict[str, Any] = json.loads(record)
        for name in SECRET_FIELDS:
            if fields.get(name):
                try:
                    fields[name] = self._fernet.decrypt(str(fields[name]).encode()).decode()
                except InvalidToken:
                    raise StoreUnavailable(f"installation record: {name} does not decrypt with "
                                           "SLACK_TOKEN_ENCRYPTION_KEY") from None
        return fields


class _Cache:
    """Records read in the last ``seconds``, per workspace (and user)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[tuple[str, str | None], tuple[float, tuple[str | None, str | None]]] = {}

    def get(self, workspace: str, user: str | None) -> tuple[str | None, str | None] | None:
        item = self._items.get((workspace, user))
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, workspace: str, user: str | None, value: tuple[str | None, str | None]) -> None:
        if self.seconds > 0:
            self._items[(workspace, user)] = (time.monotonic() + self.seconds, value)

    def drop(self, workspace: str) -> None:
        for key in [k for k in self._items if k[0] == workspace]:
            del self._items[key]


class RedisInstallationStore(AsyncInstallationStore):
    """slack_sdk's ``AsyncInstallationStore`` contract (save, find_installation, find_bot, delete_*) on
    ``InstallationRecords``. Org-wide installations are kept under the org (team ``None``), as in
    slack_sdk's own stores."""

    def __init__(self, records: InstallationRecords, cipher: TokenCipher, *, cache_seconds: float = 5.0) -> None:
        self.records = records
        self.cipher = cipher
        self.cache = _Cache(cache_seconds)
        self._logger = log

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    @staticmethod
    def _workspace(enterprise_id: str | None, team_id: str | None, org: bool | None) -> str:
        return workspace_key(enterprise_id, None if org else team_id)

    async def async_save(self, installation: Installation) -> None:
        workspace = self._workspace(installation.enterprise_id, installation.team_id,
                                    installation.is_enterprise_install)
        bot = installation.to_bot()
        try:
            await self.records.save(
                workspace, user_id=installation.user_id, installation=self.cipher.seal(dict(installation.__dict__)),
                bot=self.cipher.seal(dict(bot.__dict__)) if bot.bot_token else None)
            if installation.enterprise_id and installation.team_id and not installation.is_enterprise_install:
                await self.records.link_team(installation.team_id, workspace)  # a Grid workspace's own install
        except StoreUnavailable as exc:
            raise BoltError("the installation could not be stored") from exc  # the flow shows its error page
        self.cache.drop(workspace)

    async def async_save_bot(self, bot: Bot) -> None:
        if not bot.bot_token:
            return
        workspace = self._workspace(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        await self.records.save(workspace, user_id=None, installation=None, bot=self.cipher.seal(dict(bot.__dict__)))
        self.cache.drop(workspace)

    async def _read(self, workspace: str, user_id: str | None) -> tuple[str | None, str | None]:
        cached = self.cache.get(workspace, user_id)
        if cached is None:
            cached = await self.records.find(workspace, user_id)
            self.cache.put(workspace, user_id, cached)
        return cached

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        _, bot = await self._read(self._workspace(enterprise_id, team_id, is_enterprise_install), None)
        return Bot(**self.cipher.open(bot)) if bot else None

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        record, bot = await self._read(self._workspace(enterprise_id, team_id, is_enterprise_install), user_id)
        if not record:
            return None
        installation = Installation(**self.cipher.open(record))
        if bot:  # the latest bot token, which a later installation or a refresh may have renewed
            latest = self.cipher.open(bot)
            if latest.get("bot_token") != installation.bot_token:
                for name in ("bot_id", "bot_user_id", "bot_token", "bot_scopes", "bot_refresh_token",
                             "bot_token_expires_at"):
                    setattr(installation, name, latest.get(name))
        return installation

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        workspace = workspace_key(enterprise_id, team_id)
        await self.records.delete_bot(workspace)
        self.cache.drop(workspace)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        workspace = workspace_key(enterprise_id, team_id)
        await self.records.delete_installation(workspace, user_id)
        self.cache.drop(workspace)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        workspace = workspace_key(enterprise_id, team_id)
        await self.records.delete_all(workspace)
        self.cache.drop(workspace)

    def forget_cached(self, workspace: str) -> None:
        """Another process saved or deleted the workspace."""
        self.cache.drop(workspace)


class RedisStateStore(AsyncOAuthStateStore):
    """The install flow's ``state``: random, stored with an expiry, consumed at most once."""

    def __init__(self, states: InstallStates) -> None:
        self.states = states

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await self.states.issue()

    async def async_consume(self, state: str) -> bool:
        try:
            return await self.states.consume(state)
        except StoreUnavailable:
            log.warning("install state could not be checked: Redis unavailable")
            return False
