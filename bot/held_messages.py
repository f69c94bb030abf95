"""Messages a limit kept, answered when it resets (a community's ``over_limit = "answer_at_reset"``).

The accepting script keeps such a message in its thread's inbox, marked (``InboxEntry.held``), tells the
member once per limit window, and makes the thread due when the limit resets; later messages of the thread
wait behind it, so the thread's order is kept. Whoever takes the thread up then (the recovery loop of any
worker: a restart loses nothing) checks the marked message's limits again, counting it, before any model
call: within them, it is answered like any other; still over them (a rate that refilled one message, a
burst kept behind it), its lease goes back and the thread is due at the next reset, without a new notice.
A thread flagged at risk is never held: a marked message found in one is answered at once.
"""

from __future__ import annotations

import time

from bot.errors import LimitDeferred
from bot.limits import Limiter
from bot.store import BackoffShare, TurnInbox, TurnStart
from bot.store.inbox_entry import InboxEntry
from config.communities import CommunityConfig


class HeldMessages:
    """Takes up the messages limits kept, for the engine's turns."""

    def __init__(self, inbox: TurnInbox, waits: BackoffShare, limiter: Limiter) -> None:
        self._inbox = inbox
        #: Hands a thread's lease back until a given moment, the thread due then.
        self._waits = waits
        self._limiter = limiter

    async def take_up(self, start: TurnStart, entry: InboxEntry, config: CommunityConfig) -> None:
        """Before the turn of ``entry``: nothing when it may be answered now; raises ``LimitDeferred`` when it
        is a kept message still over a limit (the lease is back, the thread due at the limit's reset)."""
        if not entry.held or start.state.ladder.at_risk:
            return
        thread = entry.thread
        check = self._limiter.check(entry.message.author, config, thread.community)
        if check is None:  # the community's limits or the member's exemption changed: answered now
            return
        hit = await self._inbox.charge_limits(check)
        if hit is None:
            return
        due = int(time.time() * 1000) + max(0, hit.until_ms - hit.now_ms)
        await self._waits.wait_out(thread, start.token, due, None)
        raise LimitDeferred(due)
