"""A streamed answer on Slack, shown within the workspace's rate limits however many answers are streaming.

Slack limits each method per workspace: ``chat.update`` about 50 a minute (Tier 3), ``chat.startStream`` and
``chat.stopStream`` about 20 (Tier 2), ``chat.appendStream`` about 100 (Tier 4); posts about one a second per
channel. An answer that shows its early words needs a call at its end (an update, or a stop) that cannot
be dropped, so each answer asks the workspace's shared budget (``bot.store.budget``) once, when its first
words arrive, for that call's slot, before it shows anything:

- **streamed**: ``chat.startStream`` with its first words, ``chat.appendStream`` as the text grows, and
  ``chat.stopStream`` with the rest (its start and stop slots are taken together, where the channel takes
  Slack's streaming methods);
- **updated**: a post with its first words, ``chat.update`` as the text grows, and one last update (its slot
  taken up front);
- **whole**: when the budget has no slot, nothing until the model is done, then the answer in one post.

Growing text (appends, updates) is shown only while the budget keeps ``headroom`` slots free for answers'
last calls: when it is short, intermediate steps are dropped and the next one shows the latest text. So an
answer's final text never waits behind another answer's intermediate updates, and a busy workspace answers
in posts rather than in a queue of updates. Nothing here waits for the budget: every ask is answered at
once, and a dropped step is simply not tried again before the budget said it could be.

The answer's calls run in a task of its own, so the model's stream never waits on Slack. Past the message
limit a message is finished and the answer goes on in posts at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from enum import Enum

from adapters.text import split_text

from .replies import MessageGone, Poster
from .translate import escape

log = logging.getLogger(__name__)

#: What a slow answer shows until its first words arrive (then the same message becomes the answer).
WORKING = "_Working on it…_"


class Mode(Enum):
    UNDECIDED = "undecided"
    STREAMED = "streamed"  # chat.startStream / appendStream / stopStream
    UPDATED = "updated"  # chat.postMessage, then chat.update
    WHOLE = "whole"  # one post at the end


class StreamingReply:
    """A ``TextSink`` whose calls never wait on Slack (see the module's docstring)."""

    def __init__(self, poster: Poster, channel: str, thread_ts: str, *, where: str, recipient: str | None = None,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._poster = poster
        self._channel = channel
        self._thread_ts = thread_ts
        self._where = where
        #: The member the answer is for (a streamed message in a channel is addressed to one member).
        self._recipient = recipient
        self._interval = interval
        self._clock = clock
        self._text = ""
        self._done = 0  # characters of _text already finished in earlier messages
        self.mode = Mode.UNDECIDED
        self._live: str | None = None  # ts of the message still growing
        self._live_text = ""  # what it shows (unescaped)
        self._streaming = False  # the live message is an open stream (chat.stopStream still to come)
        self._placeholder = False  # the live message shows WORKING
        self._next = float("-inf")  # no intermediate step before this (clock)
        self._held = float("-inf")  # a 429's Retry-After: no call at all before this (clock)
        self._broken = False
        self._closing = False
        self._finished = False
        self._halted = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Set once the answer's first message is posted (or the task stopped without one).
        self._posted = asyncio.Event()
        self.messages: list[str] = []
        self.updates = 0
        #: Intermediate steps the budget turned down (for tests and logs).
        self.dropped = 0

    # --- what the engine and delivery call ----------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether anything of it is shown, or its first message is on its way."""
        return bool(self.messages) or (self._pending and self.mode is not Mode.WHOLE)

    @property
    def _pending(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def _workspace(self) -> str:
        return self._poster.workspace_of(self._where)

    def move(self, thread_ts: str, *, where: str) -> None:
        """Stream into another thread (a branch opened before its first answer)."""
        self._thread_ts, self._where = thread_ts, where

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if self._broken or not self._body.strip():
            return
        self._kick()

    async def working(self) -> None:
        """The model is slow to say anything: a placeholder its first words will replace, when the budget
        has the slot of the answer's last update."""
        if self.messages or self._body.strip() or self._pending or self.mode is not Mode.UNDECIDED:
            return
        if not await self._admit(streams=False):
            return
        self.mode = Mode.UPDATED
        ts = await self._poster.post(self._channel, self._thread_ts, WORKING, where=self._where, raw=True)
        if ts is None:
            return
        if self.messages or self._pending:  # the first words overtook it: they stand alone
            await self._poster.delete(self._channel, ts, where=self._where)
            return
        self._live, self._live_text, self._placeholder = ts, WORKING, True
        self.messages.append(ts)
        self._posted.set()

    async def finish_behind(self) -> None:
        """Finish like ``finish``, but wait only until the answer's first message is posted (its last call
        follows by itself): posts that follow, such as safety notices, come after it and need not wait."""
        self._closing, self._broken = True, False
        if self._body.strip():
            self._kick()
        if self._pending:
            await asyncio.shield(self._posted.wait())

    async def finish(self) -> None:
        """Show whatever is not shown yet (trying once more if a post failed) and wait until it is."""
        self._closing, self._broken = True, False
        if self._body.strip() or self._streaming:
            self._kick()
        await self._join()

    async def replace(self, text: str) -> None:
        """The engine settled on other words (an API refusal): show ``text`` in place of the stream."""
        await self._halt()
        await self._end_stream("")
        extra, self.messages = self.messages[1:], self.messages[:1]
        for ts in extra:
            await self._poster.delete(self._channel, ts, where=self._where)
        self._live = self.messages[0] if self.messages else None
        self.mode = Mode.UPDATED if self._live else Mode.WHOLE
        self._live_text, self._text, self._done, self._broken = "", text, 0, False
        self._halted, self._closing, self._finished = False, True, False
        self._kick()
        await self._join()

    async def discard(self) -> None:
        """Nothing of the stream stands (the turn failed): remove what was posted."""
        await self._halt()
        await self._end_stream("")
        for ts in self.messages:
            await self._poster.delete(self._channel, ts, where=self._where)
        self.messages, self._live, self._broken = [], None, True

    # --- the answer's task --------------------------------------------------------------------

    @property
    def _body(self) -> str:
        return self._text[self._done:]

    def _kick(self) -> None:
        self._wake.set()
        if not self._pending and self._due:
            if not self.messages:
                self._posted.clear()
            self._task = asyncio.create_task(self._run(), name=f"slack answer {self._where}")

    @property
    def _due(self) -> bool:
        """Whether there is something to do now (else the next words or the end start the task again)."""
        if self._closing or self.mode is Mode.UNDECIDED:
            return True
        if self.mode is Mode.WHOLE or not self._body.strip():
            return False
        if self._live is None:
            return True
        piece, _ = self._target()
        if piece == self._live_text or (self._streaming and not piece.startswith(self._live_text)):
            return False
        return self._next - self._clock() <= self._interval

    async def _join(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _halt(self) -> None:
        self._halted = True
        self._wake.set()
        await self._join()

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:  # a platform hiccup never stops the turn; the engine's outcome still goes out
            log.exception("%s: answer not shown", self._where)
            self._broken = True
        finally:
            self._posted.set()

    async def _steps(self) -> None:
        """Until there is nothing to do now: decide how to show the answer, then show what is due."""
        while not (self._halted or self._broken or self._finished):
            self._wake.clear()
            if self.mode is Mode.UNDECIDED:
                await self._decide()
            elif self._closing:
                await self._final()
                self._finished = True
            elif not self._due:
                return  # the next words or the end start it again
            elif self._live is None:
                await self._first()
            else:
                await self._paced()
                if not (self._closing or self._halted):
                    await self._intermediate()

    async def _decide(self) -> None:
        if self._closing:  # the answer is whole already: one post, no budget needed
            self.mode = Mode.WHOLE
            return
        if await self._admit(streams=True):
            self.mode = Mode.STREAMED
        elif await self._admit(streams=False):
            self.mode = Mode.UPDATED
        else:
            self.mode = Mode.WHOLE
        log.debug("%s: answer %s", self._where, self.mode.value)

    async def _admit(self, *, streams: bool) -> bool:
        """Take the slot(s) of the answer's last call now (and, streamed, of its start)."""
        poster = self._poster
        if streams and not poster.may_stream(self._workspace, self._channel, self._recipient):
            return False
        if poster.budget is None:
            return True
        methods = ("chat.startStream", "chat.stopStream") if streams else ("chat.update",)
        return await poster.budget.spend(self._workspace, *methods) <= 0

    async def _paced(self) -> None:
        """Wait out the interval since the last step (the end cuts it short)."""
        delay = self._next - self._clock()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ending(), delay)

    async def _ending(self) -> None:
        while not (self._closing or self._halted):
            self._wake.clear()
            await self._wake.wait()

    def _target(self) -> tuple[str, bool]:
        """What the live message should show now, and whether it is full (the answer goes on after it)."""
        body = self._body.lstrip() if self._streaming else self._body.strip()
        limit = self._poster.limit
        if len(body) <= limit:
            return body, False
        return split_text(body, limit)[0], True

    async def _first(self) -> None:
        """The first words, at once."""
        piece, full = self._target()
        if self.mode is Mode.STREAMED:
            shown = await self._start(piece)
        else:
            shown = await self._post(piece)
        if shown and full and self.mode is Mode.UPDATED:
            self.mode = Mode.WHOLE  # nothing more shows before the end
        self._next = self._clock() + self._interval

    async def _intermediate(self) -> None:
        """The text grew: show it if the budget has room beyond what answers' last calls need."""
        piece, _ = self._target()
        if piece == self._live_text or (self._streaming and not piece.startswith(self._live_text)):
            return
        method = "chat.appendStream" if self._streaming else "chat.update"
        budget = self._poster.budget
        wait = 0.0 if budget is None else await budget.spend(self._workspace, method,
                                                             headroom=self._poster.headroom)
        if wait > 0:
            self.dropped += 1
            self._next = self._clock() + max(self._interval, wait)
            return
        self._next = self._clock() + self._interval
        if self._streaming:
            await self._append(piece[len(self._live_text):], piece)
        else:
            await self._update(piece)

    async def _final(self) -> None:
        """The answer is whole: finish the live message with its slot taken up front, post the rest."""
        if (hold := self._held - self._clock()) > 0:  # Slack said when: the last call goes then, not before
            await asyncio.sleep(hold)
        body = self._body.strip()
        pieces = split_text(body, self._poster.limit) if body else []
        if self._live is not None:
            head = pieces[0] if pieces else ""
            if self._streaming:
                if not head.startswith(self._live_text):  # a cleaner cut than what was streamed: keep it
                    head = self._live_text
                await self._end_stream(head[len(self._live_text):], head)
            elif head and head != self._live_text and not await self._update(head, final=True):
                return
            if self._broken:
                return
            self._advance(head)
            pieces = split_text(self._body.strip(), self._poster.limit) if self._body.strip() else []
        for piece in pieces:
            if await self._post(piece) is None:
                return
            self._advance(piece)

    def _advance(self, shown: str) -> None:
        """``shown`` is finished in its message: the answer goes on after it."""
        at = self._text.find(shown, self._done) if shown else -1
        self._done = at + len(shown) if at >= 0 else len(self._text)
        self._live, self._live_text, self._streaming, self._placeholder = None, "", False, False

    # --- Slack calls ----------------------------------------------------------------------------

    async def _post(self, piece: str) -> str | None:
        ts = await self._poster.post(self._channel, self._thread_ts, piece, where=self._where)
        if ts is None:
            self._broken = True
            return None
        self._live, self._live_text = ts, piece
        self.messages.append(ts)
        self._posted.set()
        return ts

    async def _start(self, piece: str) -> bool:
        started = await self._poster.start_stream(self._channel, self._thread_ts, escape(piece), where=self._where,
                                                  recipient=self._recipient)
        if isinstance(started, str):
            self._live, self._live_text, self._streaming = started, piece, True
            self.messages.append(started)
            self._posted.set()
            return True
        # Slack did not take the stream (this channel does not, or a 429): the answer is shown as a post and
        # updates when the update budget has its last slot, else whole at the end.
        self.mode = Mode.UPDATED if await self._admit(streams=False) else Mode.WHOLE
        if self.mode is Mode.UPDATED:
            return await self._post(piece) is not None
        return False

    async def _append(self, delta: str, piece: str) -> None:
        if not delta:
            return
        result = await self._poster.append_stream(self._channel, self._live or "", escape(delta), where=self._where)
        if result is True:
            self._live_text = piece
            self.updates += 1
        elif result is not False:
            await self._rate_limited("chat.appendStream", result, wait=False)

    async def _end_stream(self, rest: str, head: str | None = None) -> None:
        """Stop the open stream with ``rest`` appended (its slot was taken when it started)."""
        if not self._streaming or self._live is None:
            return
        self._streaming = False
        for _ in range(3):
            result = await self._poster.stop_stream(self._channel, self._live, escape(rest), where=self._where)
            if result is not None and result is not True and result is not False:
                await self._rate_limited("chat.stopStream", result, wait=True)
                continue
            if result is None:  # the stream was already over: its text is set by an update instead
                await self._update(head or self._live_text + rest, final=True)
            elif result is False:
                self._broken = True
            else:
                self._live_text += rest
            return

    async def _update(self, piece: str, *, final: bool = False) -> bool:
        """One ``chat.update`` of the live message; a final one waits out a 429 and tries again."""
        while self._live is not None:
            self.updates += 1
            try:
                result = await self._poster.update_streamed(self._channel, self._live, escape(piece),
                                                            where=self._where)
            except MessageGone as gone:
                log.info("%s: answer's message not there to update (%s): posting it anew", self._where, gone)
                self.messages.pop()  # the live message is always the last one
                self._live = None
                return await self._post(piece) is not None
            if result is True:
                self._live_text, self._placeholder = piece, False
                return True
            if result is False:
                self._broken = final
                return False
            await self._rate_limited("chat.update", result, wait=final)
            if not final:
                return False
        return False

    async def _rate_limited(self, method: str, seconds: float, *, wait: bool) -> None:
        """A 429: every process of the workspace leaves ``method`` alone for its Retry-After; a final call
        waits it out here (off the turn) and goes again, an intermediate one is dropped."""
        self._poster.metrics.rate_limited("slack", method)
        if self._poster.budget is not None:
            await self._poster.budget.pause(self._workspace, method, seconds)
        log.info("%s: %s rate limited for %.1f s", self._where, method, seconds)
        self._next = self._held = self._clock() + seconds
        if wait:
            await asyncio.sleep(seconds)
