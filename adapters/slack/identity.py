"""The bot's own identity in the workspace, asked once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from .replies import API_ERRORS, error_code
from .translate import Identity

log = logging.getLogger(__name__)


class IdentityCache:
    """``auth.test`` once: the bot's user id (to strip mentions) and the workspace URL (for links). One call
    at a time: events that need the identity while it is being asked wait for that answer."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._identity: Identity | None = None
        self._asking: asyncio.Future[Identity] | None = None

    async def get(self) -> Identity:
        if self._identity is not None:
            return self._identity
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._ask())
        # shielded: an event handler cancelled while it waits does not cancel the others' answer
        return await asyncio.shield(self._asking)

    async def _ask(self) -> Identity:
        try:
            resp = await self._client.auth_test()
        except API_ERRORS as exc:
            log.warning("auth.test failed (%s); links and mention stripping wait for the next try",
                        error_code(exc))
            return Identity()
        finally:
            self._asking = None
        self._identity = Identity(user_id=str(resp.get("user_id") or ""), bot_id=str(resp.get("bot_id") or ""),
                                  team_id=str(resp.get("team_id") or ""), url=str(resp.get("url") or ""))
        return self._identity


class SingleWorkspaceAuthorize(AsyncAuthorize):
    """Bolt's authorize step for one workspace (a bot token of the environment) on ``IdentityCache``: one
    ``auth.test`` for the process, however many events arrive before its answer. (Bolt's own single-team
    step calls ``auth.test`` for every event that comes in while the first call is still out: a burst of
    200 first messages made 200 calls.) A failed ``auth.test`` refuses the event as Bolt does, and the next
    event asks again."""

    #: Bolt notes at start-up that the client's token is "ignored" when an authorize step is given; here the
    #: step hands that same token on, so the note would mislead whoever reads the log.
    STARTUP_NOTE = "As `installation_store` or `authorize` has been used"

    def __init__(self, identity: IdentityCache, token: str) -> None:
        self.identity = identity
        self._token = token

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **_: Any) -> AuthorizeResult | None:
        me = await self.identity.get()
        if not me.user_id:
            return None
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=me.team_id or team_id, bot_token=self._token,
                               bot_id=me.bot_id, bot_user_id=me.user_id, user_id=user_id)

    @classmethod
    def quiet(cls, record: logging.LogRecord) -> bool:
        """A logging filter: drops Bolt's start-up note about the token."""
        return not record.getMessage().startswith(cls.STARTUP_NOTE)
