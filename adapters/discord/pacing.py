"""Streamed answers' edits kept within Discord's per-channel limit, the last text of an answer first.

Discord lets a bot edit messages in one channel about 5 times per 5 s (the ``X-RateLimit-*`` headers of
``PATCH /channels/{id}/messages/{id}``). Past that, discord.py sleeps inside the call until the bucket
resets and queues every other edit of the channel behind it, first come first served: an answer's last
text would wait behind the growing text of every other answer in the channel. ``EditPacer`` decides
before discord.py sees an edit, for every streamed answer of the process:

- an intermediate edit (the answer still growing) goes only if a slot is free right now, one more is
  left for a final, and the channel's last edit is ``period / limit`` ago or more; otherwise it is
  skipped, and the answer's next edit shows the latest text. The spacing keeps the window's edits spread
  out, so a final that finds the window full waits for its oldest edit (about a second), not a window;
- a final edit (an answer's last text, or a part that filled up before the next part is posted) takes
  the channel's next slot, first come first served among finals, and no intermediate takes one while a
  final waits.

It is a ledger, not a loop: a final that has to wait is woken by one timer, set for when the channel's
oldest edit leaves the window (or by an edit coming back). An edit counts from when its call returned
(Discord counted it earlier), and holds its slot while in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

#: Discord's commonly observed bucket for message edits: 5 per 5 s per channel.
EDITS_PER_WINDOW = 5
WINDOW_SECONDS = 5.0
#: A timer may fire this much before its time (the loop's clock resolution): it still frees the slot.
_EARLY = 0.001


@dataclass
class _Channel:
    """One channel's window: when its recent edits returned, those in flight, finals waiting."""

    returned: deque[float] = field(default_factory=deque)
    flying: int = 0
    last: float = float("-inf")  # when the last slot was given
    finals: deque[asyncio.Future[None]] = field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None


class EditPacer:
    """The per-channel edit budget shared by every streamed answer of a process (see the module's doc)."""

    def __init__(self, limit: int = EDITS_PER_WINDOW, period: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.period = period
        self._channels: dict[int, _Channel] = {}
        self._swept = 0.0
        #: Intermediate edits skipped because the channel had no slot to spare (for tests and logs).
        self.skipped = 0

    def try_edit(self, channel: int) -> bool:
        """A slot for an intermediate edit, only if one can be spared right now."""
        now, ch = self._now(), self._channel(channel)
        spare = 1 if self.limit > 1 else 0  # kept for a final
        if ch.finals or self._free(ch, now) <= spare or now - ch.last < self.period / self.limit:
            self.skipped += 1
            return False
        self._take(ch, now)
        return True

    async def wait_edit(self, channel: int) -> None:
        """The channel's next slot for a final edit, ahead of every intermediate."""
        ch = self._channel(channel)
        if not ch.finals and self._free(ch, self._now()) > 0:
            self._take(ch, self._now())
            return
        turn = asyncio.get_running_loop().create_future()
        ch.finals.append(turn)
        self._arm(ch)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # the slot was ours already: the next final takes it
                ch.flying -= 1
            ch.finals = deque(f for f in ch.finals if f is not turn)
            self._grant(ch)
            raise

    def edited(self, channel: int) -> None:
        """The edit given a slot came back (done or failed): its slot counts from now."""
        ch = self._channel(channel)
        ch.flying -= 1
        ch.returned.append(self._now())
        self._arm(ch)

    # --- the ledger ----------------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _channel(self, channel: int) -> _Channel:
        now = self._now()
        if now - self._swept > self.period:  # channels quiet for a window are forgotten
            self._swept = now
            self._channels = {k: c for k, c in self._channels.items()
                              if c.flying or c.finals or self._free(c, now) < self.limit}
        return self._channels.setdefault(channel, _Channel())

    def _free(self, ch: _Channel, now: float) -> int:
        while ch.returned and ch.returned[0] <= now - self.period + _EARLY:
            ch.returned.popleft()
        return self.limit - ch.flying - len(ch.returned)

    def _take(self, ch: _Channel, now: float) -> None:
        ch.flying += 1
        ch.last = now

    def _grant(self, ch: _Channel) -> None:
        """Give free slots to the finals waiting, in order."""
        now = self._now()
        while ch.finals and self._free(ch, now) > 0:
            turn = ch.finals.popleft()
            if not turn.done():
                self._take(ch, now)
                turn.set_result(None)
        self._arm(ch)

    def _arm(self, ch: _Channel) -> None:
        """One timer for when the oldest edit leaves the window, while finals wait for it."""
        if not ch.finals or ch.timer is not None or not ch.returned:
            return  # nothing waits, a timer is set, or only edits in flight hold the slots (they call back)
        ch.timer = asyncio.get_running_loop().call_at(ch.returned[0] + self.period, self._fire, ch)

    def _fire(self, ch: _Channel) -> None:
        ch.timer = None
        self._grant(ch)
