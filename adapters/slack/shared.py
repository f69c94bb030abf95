"""Shared threads on Slack: replies addressed to members (mentioned before the text), and the button under
the line that tells bystanders of an ended thread they can continue in a thread of their own.

The button's ``value`` is the ended thread's key, so any process of the app can take the click; the member
actions decide whether the member may (``MemberActions.continue_as_own``), and the member is answered
privately in the thread.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.errors import ThreadguardError
from bot.member_actions import MemberActions
from bot.types import Author, Reply, ReplyKind, ThreadRef

from . import translate
from .identity import IdentityCache
from .replies import Poster
from .translate import escape

log = logging.getLogger(__name__)

ACTION = "threadguard_own_conversation"
LABEL = "Continue in my own conversation"
_USER_ID = re.compile(r"[A-Za-z0-9]{1,32}")
LOST = "I can't find that conversation any more."
CONTINUES = "Your conversation continues in a new thread of your own, in this channel"


class CannotOpen(ThreadguardError):
    """Slack refused the message that starts the member's own thread."""

    user_message = "I couldn't reach Slack to open your new thread. Please try the button again in a minute."


def mentions(reply: Reply) -> str:
    """The mentions of the members ``reply`` is addressed to (platform ids only), or ''."""
    return " ".join(f"<@{m}>" for m in reply.to if _USER_ID.fullmatch(m))


def addressed_text(reply: Reply) -> str:
    """What an addressed reply posts (raw: the mentions, then the escaped text)."""
    head = mentions(reply)
    return f"{head} {escape(reply.text)}" if head else escape(reply.text)


def offer_blocks(reply: Reply, thread: ThreadRef) -> list[dict[str, Any]]:
    """The bystanders' line with the button under it."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": addressed_text(reply)[:2900]}},
        {"type": "actions", "block_id": "threadguard_own", "elements": [
            {"type": "button", "action_id": ACTION, "text": {"type": "plain_text", "text": LABEL},
             "value": thread.key}]},
    ]


async def post_addressed(poster: Poster, thread: ThreadRef, reply: Reply) -> bool:
    """Post a reply addressed to members in its thread (the bystanders' line with its button); ``False`` when
    Slack refused it."""
    blocks = offer_blocks(reply, thread) if reply.kind is ReplyKind.BRANCH_OFFER else None
    return await poster.post(thread.channel, thread.thread, addressed_text(reply), where=thread.key, blocks=blocks,
                             raw=True) is not None


class OwnConversations:
    """A bystander's click on the button: a new thread in the same channel, seeded with their part of the
    ended one; they are told privately where it is (or why not)."""

    def __init__(self, members: MemberActions, poster: Poster, identity: IdentityCache) -> None:
        self._members = members
        self._poster = poster
        self._identity = identity

    async def clicked(self, body: dict[str, Any]) -> None:
        person = body.get("user") or {}
        member = Author(str(person.get("id") or ""), str(person.get("name") or person.get("username") or ""))
        action: dict[str, Any] = next((a for a in body.get("actions") or [] if a.get("action_id") == ACTION), {})
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        try:
            old = ThreadRef.from_key(str(action.get("value") or ""))
        except ValueError:
            old = None
        if old is None or old.platform != "slack" or old.channel != channel or old.community != translate.team_of(body):
            await self._poster.ephemeral(channel, member.id, None, LOST, where="own conversation")
            return
        opened: list[ThreadRef] = []

        async def open_branch(_first_text: str) -> ThreadRef:
            opened.append(await self._open(old, member))
            return opened[-1]

        outcome = await self._members.continue_as_own(old, member, open_branch)
        if outcome.branch is not None and opened:
            link = translate.thread_link(await self._identity.get(), opened[0])
            await self._poster.ephemeral(old.channel, member.id, old.thread, CONTINUES + (f": {link}" if link else "."),
                                         where=old.key)
            return
        said = [r.text for r in outcome.replies if r.ephemeral] or ["Nothing changed."]
        await self._poster.ephemeral(old.channel, member.id, old.thread, " ".join(said), where=old.key)

    async def _open(self, old: ThreadRef, member: Author) -> ThreadRef:
        """A new top-level message starts the member's thread."""
        link = translate.thread_link(await self._identity.get(), old)
        source = f"<{link}|an ended conversation>" if link else "an ended conversation"
        root = await self._poster.post(
            old.channel, None, f"\u21aa\ufe0f <@{member.id}> continues their part of {source} here, without the "
            "requests that ended it. This is a new conversation: reply in this thread to go on.",
            where=old.key, raw=True)
        if root is None:
            raise CannotOpen(f"could not open a conversation of their own from {old.key}")
        return translate.thread_ref(old.community, old.channel, root)
