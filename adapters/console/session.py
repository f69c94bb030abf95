"""The console surface: a terminal chat that drives the whole engine, and the end-to-end harness.

``ConsoleSession`` turns one line of input into lines of output; ``run_console`` is the loop around it.
"""

from __future__ import annotations

import itertools
import mimetypes
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.bootstrap import Runtime
from bot.casefile import render_case_text
from bot.review import ReviewDesk
from bot.types import (
    Attachment,
    Author,
    EditedMessage,
    IncomingMessage,
    Outcome,
    ReplyKind,
    ThreadRef,
    ThreadStatus,
)

HELP = """\
Commands:
  /new            start a new conversation
  /end            end this conversation (permanent for this thread)
  /edit N text    edit your Nth message of this conversation; after an end this opens a branch
  /cases          list this community's moderator cases
  /case N         show case N with its transcript
  /appeal [text]  tell the moderators the last ending was a mistake (once per ended conversation)
  /attach PATH    send a file (image, PDF or text) with your next message
  /quit           leave"""

_PREFIX = {
    ReplyKind.ANSWER: "bot> ",
    ReplyKind.WARNING: "[warning] ",
    ReplyKind.CRISIS: "[crisis resources] ",
    ReplyKind.FREEZE_NOTICE: "[ended] ",
    ReplyKind.FROZEN_REMINDER: "[ended] ",
    ReplyKind.CONFIRM: "bot> ",
    ReplyKind.INFO: "[info] ",
    ReplyKind.ERROR: "[error] ",
}

Write = Callable[[str], Awaitable[None]]


class ConsoleSession:
    """One person chatting with the engine in a terminal, through the member actions every surface uses."""

    def __init__(self, runtime: Runtime, *, community: str = "local", user: Author | None = None,
                 write: Write | None = None, stream: bool = False, review: ReviewDesk | None = None) -> None:
        self.members = runtime.member_actions
        self.cases = runtime.cases
        self.notices = runtime.notices
        self.review = review
        #: The case of the conversation of this session that ended last (what ``/appeal`` refers to).
        self.ended_case: int | None = None
        self.community = community
        self.user = user or Author("console-user", "you")
        self._session = secrets.token_hex(3)
        self._threads = itertools.count(1)
        self._ids = itertools.count(1)
        self.thread = self._new_thread()
        self.my_messages: list[str] = []
        self._write = write
        self._stream = stream
        self.quit = False
        #: Files ``/attach`` read, sent with the next message.
        self.pending_files: list[Attachment] = []

    def _new_thread(self) -> ThreadRef:
        return ThreadRef("console", self.community, "cli", f"{self._session}-{next(self._threads)}")

    async def handle_line(self, line: str) -> list[str]:
        """Process one line of input; returns the lines to show (streamed text excluded)."""
        stripped = line.strip()
        decided = await self._decisions()
        if stripped.startswith("/"):
            return [*decided, *await self._command(stripped)]
        message_id = f"{self.thread.thread}-m{next(self._ids)}"
        sink = self._sink() if self._stream else None
        files, self.pending_files = tuple(self.pending_files), []
        outcome = await self.members.handle_message(
            IncomingMessage(self.thread, self.user, line, message_id=message_id, attachments=files), sink)
        if outcome.model_called:
            self.my_messages.append(message_id)
        return [*decided, *self._render(outcome, streamed_newline=outcome.streamed)]

    def _sink(self) -> Callable[[str], Awaitable[None]]:
        started = False

        async def sink(delta: str) -> None:
            nonlocal started
            if self._write is None:
                return
            if not started:
                started = True
                await self._write("bot> ")
            await self._write(delta)

        return sink

    async def _command(self, line: str) -> list[str]:
        name, _, rest = line.partition(" ")
        if name == "/quit":
            self.quit = True
            return ["bye"]
        if name == "/help":
            return HELP.splitlines()
        if name == "/new":
            self.thread = self._new_thread()
            self.my_messages = []
            return ["[info] Started a new conversation."]
        if name == "/end":
            return self._render(await self.members.end_by_user(self.thread, self.user))
        if name == "/edit":
            return await self._edit(rest)
        if name == "/cases":
            return await self._cases()
        if name == "/case":
            return await self._case(rest)
        if name == "/appeal":
            return await self._appeal(rest)
        if name == "/attach":
            return self._attach(rest.strip())
        return [f"[info] Unknown command {name}. Type /help for the commands."]

    def _attach(self, path: str) -> list[str]:
        """Read a local file (at most the download limit) to send with the next message."""
        if not path:
            return ["[info] Usage: /attach PATH"]
        file = Path(path).expanduser()
        limit = self.members.file_limits.max_download_bytes
        try:
            with file.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError:
            return [f"[info] {file.name or path}: the file could not be read."]
        media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if len(data) > limit:
            self.pending_files.append(Attachment(file.name, media_type, len(data), problem=(
                f"it is larger than {limit // (1024 * 1024)} MB")))
        else:
            self.pending_files.append(Attachment(file.name, media_type, len(data), link=str(file), data=data))
        return [f"[info] {file.name} goes with your next message."]

    async def _edit(self, rest: str) -> list[str]:
        number, _, text = rest.strip().partition(" ")
        if not number.isdigit() or not text.strip():
            return ["[info] Usage: /edit N new text   (N counts your messages in this conversation from 1)"]
        n = int(number)
        if not 1 <= n <= len(self.my_messages):
            return [f"[info] This conversation has {len(self.my_messages)} message(s) of yours; "
                    f"there is no message {n}."]
        message_id = self.my_messages[n - 1]
        edited_prefix = self.my_messages[: n - 1]

        async def open_branch(_first_text: str) -> ThreadRef:
            return self._new_thread()

        sink = self._sink() if self._stream else None
        outcome = await self.members.handle_edit(
            EditedMessage(self.thread, self.user, message_id, text), open_branch, sink)
        lines = self._render(outcome, streamed_newline=outcome.streamed)
        if outcome.branch is not None:
            self.thread = outcome.branch
            self.my_messages = [*edited_prefix, message_id]
            lines.insert(0, f"[info] Branched into a new conversation from your message {n}.")
        elif outcome.status is ThreadStatus.ACTIVE and not outcome.replies:
            lines.append("[info] This conversation is still going; edits branch only after it has ended. "
                         "Just send a new message.")
        return lines

    async def _appeal(self, rest: str) -> list[str]:
        if self.review is None or self.ended_case is None:
            return ["[info] No conversation of yours has ended here, so there is nothing to appeal."]
        answer = await self.review.file_appeal(self.community, self.ended_case, self.user, rest)
        return [f"[info] {answer.message}"]

    async def _decisions(self) -> list[str]:
        """Moderators' answers to this member's appeals, queued for the console by the dashboard."""
        if self.review is None:
            return []
        lines = []
        for notice in await self.notices.pop_notices("console"):
            if notice.member == self.user.id and notice.thread.community == self.community:
                lines.extend(f"[moderator] {r.text}" for r in notice.replies)
        return lines

    async def _cases(self) -> list[str]:
        cases = await self.cases.list(self.community, limit=20)
        if not cases:
            return ["[info] No cases yet."]
        return [f"#{c.case_id} {c.ended_at} {c.action} {c.reason or '-'} {c.category or '-'} "
                f"redirections={c.redirect_count} warned={'yes' if c.warned else 'no'}" for c in cases]

    async def _case(self, rest: str) -> list[str]:
        if not rest.strip().isdigit():
            return ["[info] Usage: /case N"]
        case = await self.cases.get(self.community, int(rest))
        return render_case_text(case).rstrip("\n").splitlines()

    def _render(self, outcome: Outcome, streamed_newline: bool = False) -> list[str]:
        lines = [""] if streamed_newline else []
        for reply in outcome.replies:
            lines.append(_PREFIX.get(reply.kind, "") + reply.text)
        if outcome.case is not None:
            self.ended_case = outcome.case.case_id
            lines.append(f"[info] Moderator case #{outcome.case.case_id} was filed.")
            if self.review is not None:
                lines.append("[info] Think this ending was a mistake? Type /appeal, optionally with a sentence.")
        return lines
