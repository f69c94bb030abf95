"""The notice outbox as the core uses it: a thread's notices handed to the bot process of its platform.

For surfaces without a platform connection, such as the dashboard: a reopen there unfreezes the thread at
once, and the Discord or Slack process posts the notice (and unlocks the thread) from its worker's loop.
"""

from __future__ import annotations

import logging

from bot.store import NoticeOutbox
from bot.types import Outcome, ThreadNotice

log = logging.getLogger(__name__)


class ThreadNotices:
    """Queues an outcome's replies for a platform and hands them out, oldest first, each once."""

    def __init__(self, outbox: NoticeOutbox) -> None:
        self.outbox = outbox

    async def queue_notice(self, outcome: Outcome, action: str, case_id: int | None = None, *,
                           member: str | None = None) -> None:
        """Hand an outcome's replies to the bot process of the thread's platform (see ``pop_notices``)."""
        notice = ThreadNotice(outcome.thread, action, list(outcome.replies), case_id, member=member)
        await self.outbox.push_notice(outcome.thread.platform, notice.to_json())

    async def pop_notices(self, platform: str, limit: int = 20) -> list[ThreadNotice]:
        """Notices queued for ``platform``, oldest first; each is handed out once."""
        notices: list[ThreadNotice] = []
        for raw in await self.outbox.pop_notices(platform, limit):
            try:
                notices.append(ThreadNotice.from_json(raw))
            except (ValueError, KeyError, TypeError):
                log.warning("dropped a malformed thread notice for %s", platform)
        return notices
