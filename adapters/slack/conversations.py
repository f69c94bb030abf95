"""Member messages, mentions and edits: routed to the member actions, the outcome carried out in Slack."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.delivery import Delivery
from adapters.downloads import for_platform
from bot.errors import ThreadguardError
from bot.member_actions import MemberActions
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import (
    Attachment,
    Case,
    EditedMessage,
    IncomingMessage,
    Outcome,
    Reply,
    TextSink,
    ThreadNotice,
    ThreadRef,
)
from config.communities import Communities
from config.slack import SlackSettings

from . import translate
from .answer import StreamingReply
from .appeal import notice_blocks
from .identity import IdentityCache
from .modlog import ModLog
from .replies import Poster
from .shared import post_addressed
from .translate import Identity, escape

log = logging.getLogger(__name__)

#: Message subtypes that are a member speaking (everything else, such as joins, is not).
_SPOKEN = frozenset({None, "thread_broadcast", "file_share", "me_message"})
#: A reply this soon after its thread started may have overtaken the opening mention: it is kept for it.
_OVERTAKE_WINDOW = 120.0

#: Runs follow-up work after the event was acknowledged (``EventTasks.spawn`` in the app).
Spawn = Callable[[Callable[[], Awaitable[None]], str], None]


class SlackUnavailable(ThreadguardError):
    """Slack refused or failed a call the engine depended on (opening a branch thread)."""

    user_message = "I couldn't reach Slack to open the new thread. Please edit your message again in a minute."


class SlackSurface:
    """``Surface`` (``adapters.delivery``) for Slack: posts in the thread, ephemeral messages for the member
    alone, the appeal button under a freeze notice, and the mod-log. A Slack thread cannot be locked: an
    ended one stays open, and the bot answers later posts with an ephemeral notice."""

    private_replies = True

    def __init__(self, poster: Poster, modlog: ModLog, identity: IdentityCache) -> None:
        self.poster = poster
        self.modlog = modlog
        self.identity = identity

    async def post(self, thread: ThreadRef, reply: Reply, *, appeal: Case | None = None) -> bool:
        if reply.to:  # a shared thread: the members it is for are mentioned
            return await post_addressed(self.poster, thread, reply)
        blocks = notice_blocks(reply.text, appeal) if appeal is not None else None
        return await self.poster.post(thread.channel, thread.thread, reply.text, where=thread.key,
                                      blocks=blocks) is not None

    async def post_privately(self, thread: ThreadRef, member: str, reply: Reply) -> None:
        await self.poster.ephemeral(thread.channel, member, thread.thread, reply.text, where=thread.key)

    async def post_to_member(self, thread: ThreadRef, member: str, reply: Reply) -> bool:
        return await self.poster.post(thread.channel, thread.thread, f"<@{escape(member)}> {escape(reply.text)}",
                                      where=thread.key, raw=True) is not None

    async def close(self, thread: ThreadRef) -> None:
        return None

    async def reopen(self, thread: ThreadRef) -> None:
        return None

    async def close_again(self, thread: ThreadRef) -> None:
        return None

    async def log_case(self, case: Case) -> None:
        await self.modlog.post(case, await self.identity.get())

    async def log_alert(self, case: Case) -> None:
        await self.modlog.post_alert(case, await self.identity.get())

    async def log_line(self, community: str, text: str) -> None:
        await self.modlog.post_line(community, text)


class SlackSink:
    """The turn pipeline's delivery sink for Slack: any Slack process answers any thread from its inbox entry."""

    def __init__(self, surface: SlackSurface, delivery: Delivery, slack: SlackSettings) -> None:
        self._surface = surface
        self._delivery = delivery
        self._slack = slack

    def stream(self, entry: InboxEntry) -> TextSink | None:
        thread = entry.thread
        return StreamingReply(self._surface.poster, thread.channel, thread.thread, where=thread.key,
                              recipient=entry.target.user, interval=self._slack.stream_edit_interval)

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        await self._delivery.outcome(outcome, entry.target.user, stream if isinstance(stream, StreamingReply) else None)

    async def notice(self, notice: ThreadNotice) -> None:
        await self._delivery.notice(notice)

    async def case(self, case: Case) -> None:
        await self._surface.log_case(case)


class Conversations:
    """Routes Slack message events to the member actions. Decides only what Slack makes an adapter decide:
    which messages are addressed to the bot.

    A message is accepted into its thread's inbox before the event is acknowledged; the answer goes
    out through ``SlackSink`` from whichever Slack process works on the thread.
    """

    def __init__(self, members: MemberActions, communities: Communities, slack: SlackSettings,
                 surface: SlackSurface, delivery: Delivery, spawn: Spawn) -> None:
        self._members = members
        self._communities = communities
        self._slack = slack
        self._surface = surface
        self._delivery = delivery
        self._spawn = spawn
        self._downloads = for_platform(members.file_limits, translate.SLACK_FILE_HOSTS, slack.api_base_url)

    # --- routing (awaited before Slack gets its acknowledgement) ------------------------------

    async def on_mention(self, body: dict[str, Any], event: dict[str, Any], *, token: str | None = None) -> None:
        identity = await self._surface.identity.get()
        channel = str(event.get("channel") or "")
        if translate.is_direct(channel) or translate.from_bot(event, identity):
            return  # direct messages arrive as message events
        if not self._allowed(body, event, channel):
            log.debug("mention in channel %s ignored: not an allowed channel", channel)
            return
        await self._accept(await self._with_files(translate.incoming(body, event, identity), event, token),
                           UnknownThread.ACCEPT)

    async def on_message(self, body: dict[str, Any], event: dict[str, Any], *, token: str | None = None) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            self._spawn(lambda: self.on_edit(body, event, token=token), f"edit {body.get('event_id')}")
            return
        identity = await self._surface.identity.get()
        if subtype not in _SPOKEN or translate.from_bot(event, identity) or "ts" not in event:
            return
        channel = str(event.get("channel") or "")
        if translate.is_direct(channel, event.get("channel_type")):
            if self._slack.allow_direct_messages:
                await self._accept(await self._with_files(translate.incoming(body, event, identity), event, token),
                                   UnknownThread.ACCEPT)
            return
        if not self._allowed(body, event, channel) or translate.mentions(event.get("text", ""), identity.user_id):
            return  # a mention is handled by its app_mention event
        thread_ts = event.get("thread_ts")
        if not thread_ts or thread_ts == event["ts"]:
            return  # a top-level message that does not mention the bot
        # Whether the bot takes part in this thread is decided by Redis when the reply is accepted.
        await self._accept(await self._with_files(translate.incoming(body, event, identity), event, token),
                           UnknownThread.PARK if _young(event) else UnknownThread.IGNORE)

    async def on_edit(self, body: dict[str, Any], event: dict[str, Any], *, token: str | None = None) -> None:
        identity = await self._surface.identity.get()
        edit = translate.edited(body, event, identity)
        if edit is None:
            return
        files = await self._files(event.get("message") or {}, token)
        if files:
            edit = dataclasses.replace(edit, attachments=files)
        channel = edit.thread.channel
        if not translate.is_direct(channel, event.get("channel_type")) and not self._allowed(body, event, channel):
            return
        await self._edit(edit, identity)

    # --- the member actions -------------------------------------------------------------------

    async def _with_files(self, msg: IncomingMessage, event: dict[str, Any], token: str | None) -> IncomingMessage:
        files = await self._files(event, token)
        return dataclasses.replace(msg, attachments=files) if files else msg

    async def _files(self, message: dict[str, Any], token: str | None) -> tuple[Attachment, ...]:
        """A message's files, downloaded with the workspace's bot token from Slack's file host."""
        wanted = translate.files_wanted(message)
        if not wanted:
            return ()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return await self._downloads.fetch_all(wanted, headers)

    async def _accept(self, msg: IncomingMessage, unknown: UnknownThread) -> None:
        """Into the thread's inbox (one Redis round trip); what needs no turn is answered after the ack."""
        log.debug("thread %s: text %r", msg.thread.key, msg.text)
        ticket = await self._members.accept(msg, target=ReplyTarget(msg.author.id), unknown=unknown,
                                            wait=False)
        outcome = ticket.outcome
        if ticket.accepted:
            log.info("thread %s: message %s from %s accepted", msg.thread.key, msg.message_id, msg.author.id)
        if outcome is not None and outcome.replies:
            self._spawn(lambda: self._delivery.outcome(outcome, msg.author.id), f"notice {msg.dedupe_id}")

    async def _edit(self, edit: EditedMessage, identity: Identity) -> None:
        old = edit.thread
        stream = StreamingReply(self._surface.poster, old.channel, old.thread, where=old.key,
                                recipient=edit.author.id, interval=self._slack.stream_edit_interval)

        async def open_branch(first_text: str) -> ThreadRef:
            new = await self._open_branch(edit, first_text, identity)
            stream.move(new.thread, where=new.key)
            return new

        try:
            outcome = await self._members.handle_edit(edit, open_branch, stream)
        except ThreadguardError as exc:
            await self._failed(old, edit.author.id, exc)
            return
        await self._delivery.outcome(outcome, edit.author.id, stream)

    async def _open_branch(self, edit: EditedMessage, first_text: str, identity: Identity) -> ThreadRef:
        """A new top-level message starts the branch's thread; the old thread links to it."""
        old = edit.thread
        old_link = translate.thread_link(identity, old)
        source = f"<{old_link}|an ended conversation>" if old_link else "an ended conversation"
        quoted = "\n".join(f">{line}" for line in translate.escape(first_text[:500]).splitlines() or [""])
        root = await self._surface.poster.post(
            old.channel, None, f"\u21aa\ufe0f <@{edit.author.id}> continued {source} from an edited message:\n"
            f"{quoted}", where=old.key, raw=True)
        if root is None:
            raise SlackUnavailable(f"could not open a branch of {old.key}")
        new = translate.thread_ref(old.community, old.channel, root)
        new_link = translate.thread_link(identity, new)
        note = f"<{new_link}|in a new thread>" if new_link else "in a new thread"
        await self._surface.poster.post(old.channel, old.thread, f"\u21aa\ufe0f This conversation continues {note}.",
                                         where=old.key, raw=True)
        return new

    async def _failed(self, thread: ThreadRef, user: str, exc: ThreadguardError) -> None:
        log.warning("thread %s: %s", thread.key, type(exc).__name__)
        await self._surface.poster.ephemeral(thread.channel, user, thread.thread, exc.user_message, where=thread.key)

    # --- helpers ------------------------------------------------------------------------------

    def _allowed(self, body: dict[str, Any], event: dict[str, Any], channel: str) -> bool:
        community = self._communities.get(translate.team_of(body, event))
        return self._slack.channel_allowed(channel, community)


def _young(event: dict[str, Any]) -> bool:
    """A reply posted soon after its thread started (it may arrive before the opening mention)."""
    try:
        return float(event["ts"]) - float(event["thread_ts"]) < _OVERTAKE_WINDOW
    except (KeyError, TypeError, ValueError):
        return False
