"""The bot's own identity in the workspace, asked once."""

from __future__ import annotations

import asyncio
import logging

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
