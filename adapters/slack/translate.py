"""Slack payloads to core types and back: thread refs, text, permalinks. Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.types import Author, EditedMessage, IncomingMessage, ThreadRef

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_THREAD_LINK = re.compile(r"/archives/([CDG][A-Z0-9]+)/p(\d{10})(\d{6})(?:[^\s>|]*?thread_ts=(\d+\.\d+))?")


@dataclass(frozen=True)
class Identity:
    """Who the bot is in the workspace (from ``auth.test``)."""

    user_id: str = ""
    bot_id: str = ""
    team_id: str = ""
    #: The workspace URL, e.g. ``https://example.slack.com/``; empty when unknown.
    url: str = ""


def is_direct(channel: str, channel_type: str | None = None) -> bool:
    """A direct message with the bot (``D…`` channel ids are IMs)."""
    return channel_type == "im" or channel.startswith("D")


def thread_ref(team: str, channel: str, thread_ts: str) -> ThreadRef:
    return ThreadRef("slack", team, channel, thread_ts)


def root_ts(event: dict[str, Any]) -> str:
    """The conversation's thread: the thread it was posted in, or the message itself (it starts one)."""
    return str(event.get("thread_ts") or event["ts"])


def team_of(body: dict[str, Any], event: dict[str, Any] | None = None) -> str:
    event = event or {}
    return str(body.get("team_id") or event.get("team") or (body.get("team") or {}).get("id") or "")


def unescape(text: str) -> str:
    """Slack escapes ``& < >`` in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Text we post: nothing the model writes can become a mention, a channel ping or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clean_text(text: str, bot_user_id: str) -> str:
    """The member's words for the engine: the bot's own mention removed, Slack's escapes undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return unescape(" ".join(text.split()))


def mentions(text: str, user_id: str) -> bool:
    return bool(user_id) and any(m.group(1) == user_id for m in _MENTION.finditer(text or ""))


def from_bot(event: dict[str, Any], identity: Identity) -> bool:
    """Posted by a bot (this one or another), or a system message without a human author."""
    if event.get("bot_id") or event.get("bot_profile") or event.get("subtype") == "bot_message":
        return True
    user = event.get("user")
    return not user or user == identity.user_id


def permalink(identity: Identity, channel: str, ts: str, thread_ts: str | None = None) -> str | None:
    """A link to a message (or, with ``ts == thread_ts``, to a thread) built without an API call."""
    if not identity.url:
        return None
    link = f"{identity.url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def thread_link(identity: Identity, thread: ThreadRef) -> str | None:
    return permalink(identity, thread.channel, thread.thread)


def parse_thread_link(text: str) -> tuple[str, str] | None:
    """``(channel, thread_ts)`` from a Slack message link, as pasted into a command."""
    match = _THREAD_LINK.search(text or "")
    if match is None:
        return None
    channel, secs, micros, thread_ts = match.groups()
    return channel, thread_ts or f"{secs}.{micros}"


def incoming(body: dict[str, Any], event: dict[str, Any], identity: Identity) -> IncomingMessage:
    """A member's message (a mention, a thread reply or a DM) as the engine sees it."""
    channel = str(event["channel"])
    thread_ts = root_ts(event)
    user = str(event["user"])
    return IncomingMessage(
        thread=thread_ref(team_of(body, event), channel, thread_ts),
        author=Author(user, user),
        text=clean_text(str(event.get("text") or ""), identity.user_id),
        message_id=str(event["ts"]),
        event_id=str(body.get("event_id") or "") or None,
        jump_url=permalink(identity, channel, thread_ts),
    )


#: Where Slack serves files (``url_private_download``, with the bot token as a bearer token).
SLACK_FILE_HOSTS = ("files.slack.com",)


def files_wanted(event: dict[str, Any]) -> list[tuple[str, str, int, str, str | None]]:
    """(name, claimed type, claimed size, download URL, permalink) of a message's files, for
    ``adapters.downloads``; files Slack shows only as a tombstone or an external link are skipped."""
    wanted = []
    for file in event.get("files") or ():
        if not isinstance(file, dict) or file.get("mode") in ("tombstone", "external"):
            continue
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            continue
        wanted.append((str(file.get("name") or file.get("title") or "file"),
                       str(file.get("mimetype") or "application/octet-stream"), int(file.get("size") or 0),
                       str(url), file.get("permalink")))
    return wanted


def _file_ids(message: dict[str, Any]) -> list[str]:
    return [str(f.get("id")) for f in message.get("files") or () if isinstance(f, dict)]


def edited(body: dict[str, Any], event: dict[str, Any], identity: Identity) -> EditedMessage | None:
    """A ``message_changed`` event where a member changed the words of their message; else ``None``
    (unfurls, bots, edits that keep the same text)."""
    message = event.get("message") or {}
    previous = event.get("previous_message") or {}
    if from_bot(message, identity) or "ts" not in message:
        return None
    if (message.get("text") or "") == (previous.get("text") or "") and previous and \
            _file_ids(message) == _file_ids(previous):
        return None
    channel = str(event["channel"])
    user = str(message["user"])
    return EditedMessage(
        thread=thread_ref(team_of(body, event), channel, root_ts(message)),
        author=Author(user, user),
        message_id=str(message["ts"]),
        new_text=clean_text(str(message.get("text") or ""), identity.user_id),
        event_id=str(body.get("event_id") or "") or None,
    )
