"""The "Add to Slack" install flow (OAuth v2 through Bolt) and what many workspaces add to the Bolt app.

``GET /slack/install`` sets the state cookie and sends the installer to Slack's authorization page;
Slack sends them back to ``GET /slack/oauth_redirect?code&state``: the state must be the one this
browser was given (cookie) and one that Redis still holds (consumed on first use), the code is
exchanged with ``oauth.v2.access``, and the installation is stored (tokens encrypted). A new workspace
gets the default community settings; its installer is kept with the installation as the workspace's
first admin. ``app_uninstalled`` and ``tokens_revoked`` delete the installation: the bot stops answering
there at once, and the workspace's cases stay until ``threadguard forget-community TEAM``.

In HTTP mode the two pages are served beside the events endpoint; Socket Mode has no HTTP listener, so
they get one of their own on ``SLACK_INSTALL_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.store.installations import InstallationRecords, InstallStates, workspace_key
from config.slack import SlackSettings

from .installations import RedisInstallationStore, RedisStateStore, TokenCipher
from .workspaces import Tokens, WorkspaceAuthorize, WorkspaceIdentities, serve_team

log = logging.getLogger(__name__)


class Workspaces:
    """The installation store, the state store, tokens and the install flow, over the store's Redis client."""

    def __init__(self, redis: Any, slack: SlackSettings) -> None:
        self.slack = slack
        records = InstallationRecords(redis)
        self.records = records
        self.store = RedisInstallationStore(records, TokenCipher(slack.require_token_key()),
                                            cache_seconds=slack.installation_cache_seconds)
        self.states = RedisStateStore(InstallStates(redis, slack.state_ttl))
        self._oauth_client = AsyncWebClient(base_url=slack.api_base_url, timeout=slack.api_timeout,
                                            logger=_quiet_logger())
        rotator = AsyncTokenRotator(client_id=str(slack.client_id), client_secret=slack.require_client_secret(),
                                    client=self._oauth_client)
        self.tokens = Tokens(self.store, rotator, refresh_before=slack.token_refresh_before)
        self.identities: WorkspaceIdentities | None = None
        self._follower: asyncio.Task[None] | None = None

    def app_options(self) -> dict[str, Any]:
        """What ``AsyncApp`` takes to serve every installed workspace."""
        slack = self.slack
        settings = AsyncOAuthSettings(
            client_id=slack.client_id, client_secret=slack.require_client_secret(), scopes=list(slack.scopes),
            user_scopes=[], redirect_uri=slack.redirect_uri, install_path=slack.install_path,
            redirect_uri_path=slack.redirect_uri_path, authorization_url=slack.authorization_url,
            installation_store=self.store, state_store=self.states, state_expiration_seconds=slack.state_ttl,
            install_page_rendering_enabled=False,
            callback_options=AsyncCallbackOptions(success=_installed, failure=_refused), logger=log)
        # The flow gets a client of its own whose logger never writes DEBUG lines: slack_sdk logs request
        # and response bodies at DEBUG, and oauth.v2.access carries the secret and the new tokens.
        flow = AsyncOAuthFlow(client=self._oauth_client, logger=log, settings=settings)
        return {"oauth_flow": flow, "authorize": WorkspaceAuthorize(self.tokens)}

    def attach(self, app: AsyncApp, identities: WorkspaceIdentities) -> None:
        """The middleware that marks each event's workspace, and the uninstall listeners."""
        self.identities = identities

        async def for_workspace(context: AsyncBoltContext, next_: Callable[[], Awaitable[Any]]) -> Any:
            serve_team(context.team_id)
            return await next_()

        app.use(for_workspace)

        @app.event("app_uninstalled")
        async def uninstalled(context: AsyncBoltContext) -> None:
            await self._remove(context, None)

        @app.event("tokens_revoked")
        async def revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
            tokens = event.get("tokens") or {}
            for user in tokens.get("oauth") or []:
                await self.store.async_delete_installation(enterprise_id=context.enterprise_id,
                                                           team_id=_team(context), user_id=str(user))
            if tokens.get("bot"):  # the bot is all the app uses: without it the workspace is not served
                await self._remove(context, "bot token revoked")

    async def _remove(self, context: AsyncBoltContext, why: str | None) -> None:
        team = _team(context)
        await self.store.async_delete_all(enterprise_id=context.enterprise_id, team_id=team)
        if self.identities is not None and context.team_id:
            self.identities.forget(context.team_id)
        log.info("workspace %s %s: installation deleted; its cases are kept until `threadguard "
                 "forget-community %s`", workspace_key(context.enterprise_id, team), why or "uninstalled the app",
                 context.team_id or context.enterprise_id)

    def routes(self, app: AsyncApp) -> list[web.RouteDef]:
        """``GET`` install and redirect pages (Bolt's flow)."""
        flow = app.oauth_flow
        assert flow is not None

        async def install(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

        async def redirect(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await _callback(flow, await to_bolt_request(request)))

        return [web.get(self.slack.install_path, install), web.get(self.slack.redirect_uri_path, redirect)]

    async def start(self) -> None:
        """Follow the installations other processes change, so this one drops what it cached."""
        ready = asyncio.Event()

        def changed(workspace: str) -> None:
            self.store.forget_cached(workspace)

        self._follower = asyncio.create_task(self.records.follow_changes(changed, ready),
                                             name="slack installation changes")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5.0)

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        session = getattr(self._oauth_client, "session", None)
        if session is not None and not session.closed:
            await session.close()


def _quiet_logger() -> logging.Logger:
    """The Web API client's logger for calls that carry secrets: never below INFO, whatever the log level."""
    quiet = logging.getLogger("threadguard.slack.oauth_calls")
    quiet.setLevel(logging.INFO)
    return quiet


def _team(context: AsyncBoltContext) -> str | None:
    return None if context.is_enterprise_install else context.team_id


async def _callback(flow: AsyncOAuthFlow, request: Any) -> BoltResponse:
    """Bolt's callback, but a browser must bring both a code and a state: Slack's own error redirect
    (``?error=access_denied``) is the only request without them that gets a page rather than a refusal."""
    query = request.query
    if not query.get("error") and not (query.get("code") and query.get("state")):
        log.info("install redirect refused: missing %s", "code" if not query.get("code") else "state")
        return BoltResponse(status=400, body="This link is not a valid install redirect.",
                            headers={"content-type": "text/plain"})
    return await flow.handle_callback(request)


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    installation = args.installation
    log.info("workspace %s installed the app (installer %s, org-wide: %s)",
             workspace_key(installation.enterprise_id, installation.team_id), installation.user_id,
             bool(installation.is_enterprise_install))
    return await args.default.success(args)


async def _refused(args: AsyncFailureArgs) -> BoltResponse:
    log.info("install refused: %s", args.reason)
    return await args.default.failure(args)
