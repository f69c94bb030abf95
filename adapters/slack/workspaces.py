"""Many workspaces: every event, command and Web API call uses the token of the workspace it belongs to.

- ``WorkspaceAuthorize`` is Bolt's authorize step: the installation of the event's workspace (or org) from
  the installation store, its token renewed first when it is about to expire; no installation, no event.
- The workspace a piece of work belongs to is a context variable, set by a Bolt middleware for events and
  by ``WorkspaceSink`` for the deliveries any process makes from an inbox entry (whose thread names its
  team). ``WorkspaceWebClient`` puts that workspace's token on every call made without one, so the
  adapter's code (``Poster``, ``ModLog``...) stays the same as for one workspace.
- ``Tokens`` renews a rotating token before it expires, one process at a time (a lease in Redis); the
  others wait for its result and use the new token.
- After ``app_uninstalled`` or ``tokens_revoked`` the installation is gone: calls for that workspace are
  not made at all (``NotInstalled``), and a token Slack refuses as revoked is never sent again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError, SlackClientError, SlackTokenRotationError
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import StoreUnavailable
from bot.pipeline import InboxEntry
from bot.store.installations import InstallationRecords, workspace_key
from bot.types import Case, Outcome, TextSink, ThreadNotice

from .conversations import SlackSink
from .identity import IdentityCache
from .installations import RedisInstallationStore
from .translate import Identity

log = logging.getLogger(__name__)

#: The Slack team the current task works for (None: no workspace, e.g. the install flow).
CURRENT_TEAM: contextvars.ContextVar[str | None] = contextvars.ContextVar("slack_team", default=None)
#: What Slack answers for a token that will never work again.
DEAD_TOKEN_ERRORS = frozenset({"token_revoked", "invalid_auth", "account_inactive", "not_authed", "token_expired"})
_LEASE_MS = 10_000
_WAIT_FOR_RENEWAL = 10.0


class NotInstalled(SlackClientError):
    """No installation serves the workspace (never installed, uninstalled, or its token was revoked):
    the call is not made."""


def serve_team(team: str | None) -> None:
    """From here on, the current task works for ``team`` (its Web API calls use that team's token)."""
    CURRENT_TEAM.set(team or None)


class Tokens:
    """Installations by workspace, with rotating tokens renewed before they expire by one process."""

    def __init__(self, store: RedisInstallationStore, rotator: AsyncTokenRotator | None, *,
                 refresh_before: float) -> None:
        self.store = store
        self.records: InstallationRecords = store.records
        self.rotator = rotator
        self.refresh_before = refresh_before
        self._links: dict[str, tuple[float, str]] = {}
        self._dead: set[str] = set()

    def _expiring(self, installation: Installation) -> bool:
        expires = installation.bot_token_expires_at
        return expires is not None and expires - time.time() < self.refresh_before

    async def installation(self, enterprise_id: str | None, team_id: str | None,
                           org: bool = False) -> Installation | None:
        workspace = workspace_key(enterprise_id, None if org else team_id)

        async def find() -> Installation | None:
            return await self.store.async_find_installation(enterprise_id=enterprise_id, team_id=team_id,
                                                            is_enterprise_install=org)

        found = await find()
        if found is None or not self._expiring(found) or self.rotator is None:
            return found
        return await self._renew(workspace, find)

    async def _renew(self, workspace: str, find: Callable[[], Awaitable[Installation | None]]
                     ) -> Installation | None:
        deadline = time.monotonic() + _WAIT_FOR_RENEWAL
        while True:
            self.store.forget_cached(workspace)
            lease = await self.records.hold_refresh(workspace, _LEASE_MS)
            current = await find()
            if current is None or not self._expiring(current):
                if lease:
                    await self.records.release_refresh(workspace, lease)
                return current  # renewed meanwhile (by another process), or uninstalled
            if lease:
                try:
                    return await self._rotate(workspace, current)
                finally:
                    await self.records.release_refresh(workspace, lease)
            if time.monotonic() > deadline:
                log.warning("workspace %s: token renewal by another process is taking long", workspace)
                return current
            await asyncio.sleep(0.1)  # another process renews it: use its result

    async def _rotate(self, workspace: str, current: Installation) -> Installation:
        assert self.rotator is not None
        minutes = math.ceil(self.refresh_before / 60) + 1  # it is expiring: make the rotator renew it
        try:
            renewed = await self.rotator.perform_token_rotation(installation=current,
                                                                 minutes_before_expiration=minutes)
        except SlackTokenRotationError as exc:
            log.error("workspace %s: token renewal refused (%s)", workspace, _code(exc.api_error))
            return current
        if renewed is None:
            return current
        await self.store.async_save(renewed)
        log.info("workspace %s: token renewed", workspace)
        return renewed

    async def for_team(self, team: str) -> Installation | None:
        """The installation serving ``team``: its own, the one of its Enterprise Grid workspace, or its org's."""
        workspace = await self._workspace_of(team)
        enterprise, _, own_team = workspace.partition(":")
        enterprise_id = None if enterprise == "-" else enterprise
        org = own_team == "-"
        return await self.installation(enterprise_id, None if org else team, org)

    async def _workspace_of(self, team: str) -> str:
        cached = self._links.get(team)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        workspace = await self.records.workspace_of(team) or workspace_key(None, team)
        self._links[team] = (time.monotonic() + 60.0, workspace)
        return workspace

    async def remember(self, team: str, workspace: str) -> None:
        """Team ``team`` is served by the installation kept under ``workspace`` (Enterprise Grid)."""
        cached = self._links.get(team)
        if cached is not None and cached[1] == workspace:
            return
        await self.records.link_team(team, workspace)
        self._links[team] = (time.monotonic() + 60.0, workspace)

    async def bot_token(self, team: str) -> str:
        try:
            installation = await self.for_team(team)
        except StoreUnavailable as exc:
            raise NotInstalled(f"workspace {team}: installation unreadable") from exc
        token = installation.bot_token if installation is not None else None
        if not token or not self.usable(token):
            raise NotInstalled(f"workspace {team} has no installation")
        return token

    def usable(self, token: str) -> bool:
        return token not in self._dead

    def refused(self, token: str) -> None:
        """Slack refused ``token`` for good: it is never sent again by this process."""
        self._dead.add(token)


class WorkspaceWebClient(AsyncWebClient):
    """A Web API client that signs each call with the current workspace's bot token (``CURRENT_TEAM``).
    Calls that carry their own token (the install flow, Socket Mode's connection) go out as they are."""

    def __init__(self, *, tokens: Tokens, **kwargs: Any) -> None:
        super().__init__(token=None, **kwargs)
        self.tokens = tokens

    async def api_call(self, api_method: str, *, http_verb: str = "POST", files: dict[str, Any] | None = None,
                       data: Any = None, params: dict[str, Any] | None = None, json: dict[str, Any] | None = None,
                       headers: dict[str, Any] | None = None, auth: dict[str, Any] | None = None,
                       ) -> AsyncSlackResponse:
        team = CURRENT_TEAM.get()
        token: str | None = None
        if team is not None and auth is None and not _carries_token(params, json, data, headers):
            token = await self.tokens.bot_token(team)
            headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        try:
            return await super().api_call(api_method, http_verb=http_verb, files=files, data=data, params=params,
                                          json=json, headers=headers, auth=auth)
        except SlackApiError as exc:
            if token is not None and _code(exc) in DEAD_TOKEN_ERRORS:
                log.warning("workspace %s: Slack refused its token (%s); no more calls with it", team, _code(exc))
                self.tokens.refused(token)
            raise


def _carries_token(*parts: Any) -> bool:
    return any(isinstance(part, dict) and ("token" in part or "Authorization" in part) for part in parts)


def _code(exc: BaseException) -> str:
    data = getattr(getattr(exc, "response", None), "data", None)
    return str(data.get("error")) if isinstance(data, dict) and data.get("error") else type(exc).__name__


class WorkspaceAuthorize(AsyncAuthorize):
    """Bolt's authorize step on ``Tokens``: the installation's own bot ids, no ``auth.test`` per event."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **_: Any) -> AuthorizeResult | None:
        org = bool(context.is_enterprise_install)
        installation = await self.tokens.installation(enterprise_id, team_id, org)
        if installation is None or not installation.bot_token or not self.tokens.usable(installation.bot_token):
            log.info("event for workspace %s ignored: not installed", workspace_key(enterprise_id, team_id))
            return None
        if team_id and enterprise_id:  # Enterprise Grid: deliveries find the installation from the team
            await self.tokens.remember(team_id, workspace_key(enterprise_id, None if org else team_id))
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=installation.bot_token,
                               bot_id=installation.bot_id, bot_user_id=installation.bot_user_id,
                               bot_scopes=installation.bot_scopes, user_id=user_id)


class WorkspaceIdentities(IdentityCache):
    """``auth.test`` once per workspace: the bot's user id there and the workspace's URL."""

    def __init__(self, client: AsyncWebClient) -> None:
        super().__init__(client)
        self._teams: dict[str, IdentityCache] = {}

    async def get(self) -> Identity:
        team = CURRENT_TEAM.get()
        if team is None:
            return Identity()
        cache = self._teams.get(team)
        if cache is None:
            cache = self._teams[team] = IdentityCache(self._client)
        return await cache.get()

    def forget(self, team: str) -> None:
        self._teams.pop(team, None)


class WorkspaceSink:
    """The Slack delivery sink, working for the workspace of each entry, notice or case it gets."""

    def __init__(self, inner: SlackSink) -> None:
        self.inner = inner

    def stream(self, entry: InboxEntry) -> TextSink | None:
        serve_team(entry.thread.community)  # the rest of this turn's task works for that workspace
        return self.inner.stream(entry)

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        serve_team(entry.thread.community)
        await self.inner.deliver(entry, outcome, stream)

    async def notice(self, notice: ThreadNotice) -> None:
        serve_team(notice.thread.community)
        await self.inner.notice(notice)

    async def case(self, case: Case) -> None:
        serve_team(case.community)
        await self.inner.case(case)
