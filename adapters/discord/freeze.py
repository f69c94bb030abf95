"""Carrying out the engine's freeze on Discord: lock and archive the thread (or undo it on reopen)."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.types import ThreadRef

from .translate import DM_COMMUNITY

log = logging.getLogger(__name__)

REASON = "threadguard: conversation ended"


class ThreadLocker:
    """Locks, archives and reopens threads. Where Discord refuses (missing Manage Threads, error
    50083 on an archived thread, a deleted thread), the engine's freeze still holds: the bot answers
    later messages with the frozen reminder and never calls the model. The admin is told in the log."""

    def __init__(self, client: discord.Client, *, enabled: bool = True) -> None:
        self._client = client
        self._enabled = enabled

    async def freeze(self, ref: ThreadRef) -> bool:
        if not self._enabled or ref.community == DM_COMMUNITY or ref.thread == ref.channel:
            return False
        return await self._edit(ref, "lock and archive", locked=True, archived=True, reason=REASON)

    async def unfreeze(self, ref: ThreadRef) -> bool:
        if ref.community == DM_COMMUNITY or ref.thread == ref.channel:
            return False
        return await self._edit(ref, "reopen", archived=False, locked=False,
                                reason="threadguard: reopened by a moderator")

    async def rearchive(self, ref: ThreadRef) -> bool:
        """Archive again after the bot posted into an ended thread (posting unarchives it)."""
        if not self._enabled or ref.community == DM_COMMUNITY:
            return False
        return await self._edit(ref, "archive", archived=True, locked=True, reason=REASON)

    async def _edit(self, ref: ThreadRef, what: str, **options: Any) -> bool:
        try:
            await self._client.http.edit_channel(int(ref.thread), **options)
        except discord.Forbidden as exc:
            log.warning("could not %s thread %s (HTTP 403, code %s): grant the bot Manage Threads; the "
                        "conversation stays frozen in threadguard", what, ref.key, exc.code)
        except discord.NotFound:
            log.warning("could not %s thread %s: it no longer exists", what, ref.key)
        except discord.HTTPException as exc:
            log.warning("could not %s thread %s (HTTP %s, code %s); the conversation stays frozen in "
                        "threadguard", what, ref.key, exc.status, exc.code)
        else:
            log.info("thread %s: %s done", ref.key, what)
            return True
        return False
