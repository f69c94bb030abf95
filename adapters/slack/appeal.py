"""Members' appeals on Slack: a button under the freeze notice, a modal with one optional sentence.

Slack wants every interaction acknowledged within 3 seconds: the listeners acknowledge first and do the
work right after (opening the modal uses the click's ``trigger_id``, which Slack honours for 3 seconds).
The button's ``value`` carries the community and the case, so any process of the app can take the click.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.review import (
    APPEAL_DUPLICATE,
    APPEAL_MAX_CHARS,
    APPEAL_NOT_APPEALABLE,
    APPEAL_NOT_PARTICIPANT,
    AppealResult,
    ReviewDesk,
)
from bot.types import Author, Case

from .identity import IdentityCache
from .modlog import ModLog
from .replies import API_ERRORS, Poster, error_code
from .translate import escape

log = logging.getLogger(__name__)

ACTION = "threadguard_appeal"
VIEW = "threadguard_appeal_form"
LABEL = "This ending was a mistake"


def notice_blocks(text: str, case: Case) -> list[dict[str, Any]]:
    """The freeze notice with the appeal button under it."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(text)[:2900]}},
        {"type": "actions", "block_id": "threadguard_appeal", "elements": [
            {"type": "button", "action_id": ACTION, "text": {"type": "plain_text", "text": LABEL},
             "value": f"{case.community}:{case.case_id}"}]},
    ]


def appeal_modal(meta: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": VIEW, "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "Appeal this ending"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "input", "block_id": "appeal", "optional": True,
                    "label": {"type": "plain_text", "text": "Why was it a mistake? (optional)"},
                    "hint": {"type": "plain_text", "text": "A moderator reads this and decides."},
                    "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                                "max_length": APPEAL_MAX_CHARS}}],
    }


class Appeals:
    """Carries out appeal clicks and form submissions (after the listener acknowledged them)."""

    def __init__(self, client: AsyncWebClient, review: ReviewDesk, poster: Poster, modlog: ModLog,
                 identity: IdentityCache) -> None:
        self._client = client
        self._identity = identity
        self._review = review
        self._poster = poster
        self._modlog = modlog

    async def clicked(self, body: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        message = body.get("message") or {}
        thread_ts = str(message.get("thread_ts") or message.get("ts") or "")
        action: dict[str, Any] = next((a for a in body.get("actions") or [] if a.get("action_id") == ACTION), {})
        community, _, number = str(action.get("value") or "").rpartition(":")
        where = f"appeal {community}#{number}"
        case = await self._review.case_for_appeal(community, int(number)) if number.isdigit() else None
        if case is None:
            await self._poster.ephemeral(channel, user, thread_ts, APPEAL_NOT_APPEALABLE, where=where)
            return
        if user not in {p.id for p in case.participants}:
            await self._poster.ephemeral(channel, user, thread_ts, APPEAL_NOT_PARTICIPANT, where=where)
            return
        if await self._review.has_appealed(community, case.case_id, user):
            await self._poster.ephemeral(channel, user, thread_ts, APPEAL_DUPLICATE, where=where)
            return
        meta = {"community": community, "case": str(case.case_id), "channel": channel, "thread": thread_ts}
        try:
            await self._client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=appeal_modal(meta))
        except API_ERRORS as exc:
            log.warning("%s: views.open failed (%s)", where, error_code(exc))

    async def submitted(self, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            community, case_id = str(meta["community"]), int(meta["case"])
        except (ValueError, KeyError, TypeError):
            log.warning("appeal form with unreadable metadata ignored")
            return
        values = ((view.get("state") or {}).get("values") or {}).get("appeal") or {}
        text = str((values.get("text") or {}).get("value") or "")
        person = body.get("user") or {}
        member = Author(str(person.get("id") or ""), str(person.get("name") or person.get("username") or ""))
        answer = await self._review.file_appeal(community, case_id, member, text)
        where = f"appeal {community}#{case_id}"
        await self._poster.ephemeral(str(meta.get("channel") or ""), member.id, str(meta.get("thread") or "") or None,
                                     answer.message, where=where)
        if answer.result is AppealResult.FILED:
            await self._modlog.post_appeal(answer, await self._identity.get())
