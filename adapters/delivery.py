"""Carrying out what the core decided, written once for every platform.

An outcome: the streamed answer settled (its message made to stand before what follows it, its last
update after; or the engine's final words in its place; or withdrawn), then the replies in order (a
private one to the member alone where the platform can, the freeze notice with its appeal button), then
an ended thread closed, then the mod-log: the case, a moderator's action, a risk alert, spend lines.
A notice another process queued (a dashboard reopen, an appeal decision): a reopened thread opened again
first, each reply posted (addressed to the member when it answers their appeal), an upheld appeal's thread
closed again after.

Each platform plugs in a ``Surface`` (how it posts, posts privately, closes and reopens a thread and
writes to its mod-log) and hands over its streams as ``AnswerStream``. The adapters decide nothing here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.types import Case, Outcome, Reply, ReplyKind, ThreadNotice, ThreadRef, ThreadStatus

#: Runs work after the caller returned (a streamed answer's last update, on Slack); ``None``: awaited.
Later = Callable[[Callable[[], Awaitable[None]], str], None]


class AnswerStream(Protocol):
    """A platform's stream of the answer while the model writes it."""

    @property
    def started(self) -> bool:
        """Whether anything of it is (or is being) shown."""
        ...

    async def finish_behind(self) -> None:
        """The answer's message stands (posts that follow come after it); its last update may follow."""
        ...

    async def finish(self) -> None:
        """Show whatever is not shown yet."""
        ...

    async def replace(self, text: str) -> None:
        """Show ``text`` in place of what was streamed."""
        ...

    async def discard(self) -> None:
        """Nothing of the stream stands."""
        ...


class Surface(Protocol):
    """Where one platform shows what the core decided."""

    #: A reply meant for the member alone can be shown to them alone (Slack's ephemeral messages);
    #: otherwise it is posted in the thread (Discord), and may stand in place of a streamed answer.
    private_replies: bool

    async def post(self, thread: ThreadRef, reply: Reply, *, appeal: Case | None = None) -> bool:
        """Post ``reply`` in the thread (``appeal``: the ended case a freeze notice offers to appeal);
        ``False`` when the platform refused it."""
        ...

    async def post_privately(self, thread: ThreadRef, member: str, reply: Reply) -> None:
        """Show ``reply`` to ``member`` alone (where the platform cannot, in the thread)."""
        ...

    async def post_to_member(self, thread: ThreadRef, member: str, reply: Reply) -> bool:
        """Post ``reply`` in the thread addressed to ``member`` (an appeal decision)."""
        ...

    async def close(self, thread: ThreadRef) -> None:
        """The thread ended: close it where the platform can (Discord locks and archives it)."""
        ...

    async def reopen(self, thread: ThreadRef) -> None:
        """A moderator reopened the thread: open it again before its notice is posted."""
        ...

    async def close_again(self, thread: ThreadRef) -> None:
        """Posting into a thread that stays ended may have opened it: close it again."""
        ...

    async def log_case(self, case: Case) -> None:
        """Post a case to the community's mod-log."""
        ...

    async def log_alert(self, case: Case) -> None:
        """Post a risk alert privately to the community's mod-log."""
        ...

    async def log_line(self, community: str, text: str) -> None:
        """Post one line to the community's mod-log (a spend alert)."""
        ...


class Delivery:
    """Carries out outcomes and queued notices on one platform's ``Surface``."""

    def __init__(self, surface: Surface, *, later: Later | None = None) -> None:
        self.surface = surface
        self._later = later

    async def outcome(self, outcome: Outcome, member: str | None = None, stream: AnswerStream | None = None) -> None:
        """Carry out ``outcome`` for ``member`` (who sent the message: a private reply is for them); ``stream``:
        the answer as it was streamed."""
        if outcome.duplicate or outcome.queued or outcome.ignored:
            return
        surface, thread = self.surface, outcome.thread
        replies = list(outcome.replies)
        finishing = stream if stream is not None and outcome.streamed else None
        if finishing is not None:
            await finishing.finish_behind()
            replies = [r for r in replies if r.kind is not ReplyKind.ANSWER]
        elif stream is not None and stream.started:
            replies = await self._settle(stream, replies)
        for reply in replies:
            if reply.ephemeral and surface.private_replies and member is not None:
                await surface.post_privately(thread, member, reply)
            else:
                appeal = outcome.case if reply.kind is ReplyKind.FREEZE_NOTICE else None
                await surface.post(thread, reply, appeal=appeal)
        if finishing is not None:
            if self._later is not None:
                self._later(finishing.finish, f"finish {thread.key}")
            else:
                await finishing.finish()
        if outcome.case is not None and outcome.status is ThreadStatus.ENDED:
            await surface.close(thread)
        for case in (outcome.case, outcome.action):
            if case is not None:
                await surface.log_case(case)
        if outcome.alert is not None:
            await surface.log_alert(outcome.alert)
        for line in outcome.spend_alerts:
            await surface.log_line(thread.community, line)

    async def _settle(self, stream: AnswerStream, replies: list[Reply]) -> list[Reply]:
        """A stream the outcome did not keep (an API refusal, an error): the engine's final answer takes its
        place (or, where a private reply cannot be private, the error does); otherwise it is withdrawn.
        Returns the replies still to post."""
        first = replies[0] if replies else None
        if first is not None and (first.kind is ReplyKind.ANSWER or
                                  (first.kind is ReplyKind.ERROR and not self.surface.private_replies)):
            await stream.replace(first.text)
            return replies[1:]
        await stream.discard()
        return replies

    async def notice(self, notice: ThreadNotice) -> None:
        """Carry out a notice another process queued for this platform (a dashboard reopen, an appeal
        decision)."""
        surface, thread = self.surface, notice.thread
        if notice.action == "reopen":
            await surface.reopen(thread)
        posted = True
        for reply in notice.replies:
            if reply.ephemeral:  # nobody to show a private notice to
                continue
            if notice.member:
                posted = await surface.post_to_member(thread, notice.member, reply) and posted
            else:
                posted = await surface.post(thread, reply) and posted
        if notice.action == "appeal" and posted:
            await surface.close_again(thread)
