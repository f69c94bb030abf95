"""The model API's rate limits as one back-off every worker keeps to.

When a call still gets 429 after the client's own retries, the worker shares the wait the API asked for
(``retry-after``, or its ``anthropic-ratelimit-*-reset`` headers) through Redis (``BackoffShare``); every
worker hears it at once on the wake-up channel, and its recovery loop reads it each pass. While it holds,
no turn calls the model: the message stays at the head of its thread's inbox, the lease is handed back and
the thread is due again when the wait ends, so a burst waits in the inboxes instead of failing, in order,
and is answered once.
"""

from __future__ import annotations

import logging
import time

from bot.errors import ModelBackingOff, ModelRateLimited, StoreUnavailable
from bot.store import BackoffShare
from bot.types import ThreadRef

log = logging.getLogger(__name__)

#: The wait when the API said nothing about how long (seconds).
DEFAULT_WAIT = 5.0
#: A wait the API asks for is kept within this (seconds).
MAX_WAIT = 120.0


def now_ms() -> int:
    return int(time.time() * 1000)


class ModelBackoff:
    """This process's view of the shared back-off."""

    def __init__(self, share: BackoffShare, tell_after: float = 5.0) -> None:
        self._share = share
        self._tell_after_ms = int(tell_after * 1000)
        self.until_ms = 0

    def holding(self) -> ModelBackingOff | None:
        """The back-off to keep to now, if any."""
        return ModelBackingOff(self.until_ms) if self.until_ms > now_ms() else None

    async def rate_limited(self, exc: ModelRateLimited) -> ModelBackingOff:
        """A 429 after retries: hold the wait it asked for, here and for every worker."""
        wait = min(MAX_WAIT, exc.retry_after if exc.retry_after is not None else DEFAULT_WAIT)
        until = max(self.until_ms, now_ms() + int(wait * 1000))
        try:
            until = max(until, await self._share.share(until))
        except StoreUnavailable:
            log.warning("model API back-off of %.1f s kept in this process only (Redis unreachable)", wait)
        self.until_ms = until
        log.warning("model API rate limited: every turn waits %.1f s", (until - now_ms()) / 1000)
        return ModelBackingOff(until)

    async def wait_out(self, thread: ThreadRef, token: str, holding: ModelBackingOff) -> ModelBackingOff:
        """The turn keeps to the back-off: its message stays at the inbox head, the lease goes back and
        the thread is due when the wait ends; ``tell`` says whether its member hears that it is queued."""
        holding.tell = await self._share.wait_out(thread, token, holding.until_ms, self._tell_after_ms)
        return holding

    async def refresh(self) -> None:
        """Read the shared back-off (the recovery loop, every pass)."""
        self.until_ms = max(self.until_ms, await self._share.read())

    def heard(self, until_ms: int) -> None:
        """Another worker shared a back-off (the wake-up channel said so): keep to it from now on."""
        self.until_ms = max(self.until_ms, until_ms)
