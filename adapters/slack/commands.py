"""``/threadguard`` and the "End conversation" message shortcut, answered ephemerally.

``end`` is for everyone (Slack has no slash commands inside threads, so it takes a link to the thread,
or use the message shortcut from any message in it). ``cases``, ``case N`` and ``reopen N`` are for the
workspace's moderators: listed user ids, or members of the moderator user group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.delivery import Delivery
from bot.casefile import render_case_text
from bot.caselog import CaseLog
from bot.errors import NotAllowed, ThreadguardError
from bot.member_actions import MemberActions
from bot.moderation import Moderation
from bot.types import CATEGORY_LABELS, Author, Case, ReplyKind
from config.communities import Communities
from config.slack import SlackSettings

from . import translate
from .conversations import SlackSurface
from .modlog import case_blocks, case_link
from .replies import API_ERRORS, error_code

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]

PAGE = 10
_TRANSCRIPT_PREVIEW = 2500

HELP = (
    "*threadguard*\n"
    "• `/threadguard end <link to the thread>` ends your conversation with me in that thread "
    "(or use *End conversation* from the ⋯ menu of any message in the thread).\n"
    "Moderators:\n"
    "• `/threadguard cases [page]` lists the cases, newest first\n"
    "• `/threadguard case N` shows case N\n"
    "• `/threadguard reopen N` reopens the thread of case N"
)
END_USAGE = (
    "Slack doesn't run slash commands inside threads, so tell me which conversation to end: "
    "`/threadguard end <link to a message in the thread>`, or choose *End conversation* from the ⋯ menu "
    "of a message in that thread."
)
_MODERATOR_ONLY = "Only this workspace's moderators can use that command."
_CHECK_FAILED = "I couldn't check whether you are a moderator just now. Please try again in a minute."


class Moderators:
    """Who may run moderator commands in a workspace: configured ids, or the configured user group."""

    def __init__(self, client: AsyncWebClient, communities: Communities, slack: SlackSettings) -> None:
        self._client = client
        self._communities = communities
        self._slack = slack

    async def check(self, team: str, user: str) -> None:
        """Raises ``NotAllowed`` unless ``user`` is a moderator of ``team``."""
        config = self._communities.get(team)
        if user in self._slack.moderators_for(config):
            return
        group = self._slack.moderator_group_for(config)
        if group:
            try:
                resp = await self._client.usergroups_users_list(usergroup=group)
            except API_ERRORS as exc:
                log.warning("usergroups.users.list %s failed (%s)", group, error_code(exc))
                raise _CheckFailed from exc
            if user in (resp.get("users") or []):
                return
        raise NotAllowed(f"user {user} is not a moderator of {team}")


    async def includes(self, team: str, user: str) -> bool:
        """Whether ``user`` is a moderator of ``team`` (``False`` when it cannot be checked now)."""
        try:
            await self.check(team, user)
        except ThreadguardError:
            return False
        return True


class _CheckFailed(ThreadguardError):
    user_message = _CHECK_FAILED


class Commands:
    def __init__(self, members: MemberActions, cases: CaseLog, moderation: Moderation, moderators: Moderators,
                 surface: SlackSurface, delivery: Delivery) -> None:
        self._members = members
        self._cases = cases
        self._moderation = moderation
        self._moderators = moderators
        self._surface = surface
        self._delivery = delivery

    async def command(self, body: dict[str, Any], respond: Respond) -> None:
        """One ``/threadguard …`` invocation (already acknowledged)."""
        team, user = str(body.get("team_id") or ""), str(body.get("user_id") or "")
        name = str(body.get("user_name") or user)
        words = str(body.get("text") or "").split()
        verb, args = (words[0].lower(), words[1:]) if words else ("help", [])
        log.info("command %s from %s in %s", verb, user, team)
        try:
            if verb == "end":
                await self._end_from_link(team, user, name, " ".join(args), respond)
            elif verb in ("cases", "case", "reopen"):
                await self._moderators.check(team, user)
                await self._moderator(verb, args, team, Author(user, name), respond)
            else:
                await _say(respond, HELP)
        except NotAllowed:
            log.info("moderator command %s refused for %s in %s", verb, user, team)
            await _say(respond, _MODERATOR_ONLY)
        except ThreadguardError as exc:
            await _say(respond, exc.user_message)

    async def shortcut(self, body: dict[str, Any], respond: Respond) -> None:
        """The "End conversation" message shortcut, run on any message of the thread."""
        message = body.get("message") or {}
        team = translate.team_of(body)
        user = body.get("user") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        if not channel or "ts" not in message:
            await _say(respond, END_USAGE)
            return
        try:
            await self._end(team, channel, translate.root_ts(message),
                            Author(str(user.get("id") or ""), str(user.get("name") or user.get("id") or "")),
                            respond)
        except ThreadguardError as exc:
            await _say(respond, exc.user_message)

    # --- end ----------------------------------------------------------------------------------

    async def _end_from_link(self, team: str, user: str, name: str, text: str, respond: Respond) -> None:
        where = translate.parse_thread_link(text)
        if where is None:
            await _say(respond, END_USAGE)
            return
        await self._end(team, where[0], where[1], Author(user, name), respond)

    async def _end(self, team: str, channel: str, thread_ts: str, author: Author, respond: Respond) -> None:
        identity = await self._surface.identity.get()
        thread = translate.thread_ref(team, channel, thread_ts)
        outcome = await self._members.end_by_user(thread, author, jump_url=translate.thread_link(identity, thread),
                                                  moderator=await self._moderators.includes(team, author.id))
        private = [r for r in outcome.replies if r.ephemeral]
        outcome.replies = [r for r in outcome.replies if not r.ephemeral]
        await self._delivery.outcome(outcome, author.id)
        if outcome.case is not None:
            await _say(respond, "Done: the conversation is ended and the thread is closed.")
        for reply in private:
            await _say(respond, reply.text)

    # --- moderators ---------------------------------------------------------------------------

    async def _moderator(self, verb: str, args: list[str], team: str, moderator: Author, respond: Respond) -> None:
        if verb == "cases":
            page = _number(args[0]) if args else 1
            await self._list(team, max(page or 1, 1), respond)
            return
        number = _number(args[0]) if args else None
        if number is None:
            await _say(respond, f"Which case? `/threadguard {verb} N`")
        elif verb == "case":
            await self._show(team, number, respond)
        else:
            await self._reopen(team, number, moderator, respond)

    async def _list(self, team: str, page: int, respond: Respond) -> None:
        cases = await self._cases.list(team, offset=(page - 1) * PAGE, limit=PAGE)
        if not cases:
            await _say(respond, "No cases." if page == 1 else f"No cases on page {page}.")
            return
        identity = await self._surface.identity.get()
        lines = [f"*Cases, page {page}* (newest first)"]
        for c in cases:
            link = case_link(c, identity)
            label = CATEGORY_LABELS.get(c.category or "", c.category or "-")
            where = f" · <{link}|thread>" if link else ""
            lines.append(f"• *#{c.case_id}* {c.action} · {c.reason or '-'} · {label} · {c.ended_at}{where}")
        if len(cases) == PAGE:
            lines.append(f"More: `/threadguard cases {page + 1}`")
        await _say(respond, "\n".join(lines))

    async def _show(self, team: str, number: int, respond: Respond) -> None:
        case = await self._cases.get(team, number)
        blocks = case_blocks(case, await self._surface.identity.get())
        preview = _transcript_preview(case)
        if preview:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{preview}```"}})
        await _say(respond, f"Case #{case.case_id}", blocks=blocks)

    async def _reopen(self, team: str, number: int, moderator: Author, respond: Respond) -> None:
        outcome = await self._moderation.reopen(team, number, moderator)
        if outcome.action is None:
            await _say(respond, " ".join(r.text for r in outcome.replies) or f"Case {number} was not reopened.")
            return
        thread = outcome.thread
        posted = True
        for reply in outcome.replies:
            if reply.kind is ReplyKind.INFO and not reply.ephemeral:
                posted = await self._surface.poster.post(thread.channel, thread.thread, reply.text,
                                                          where=thread.key) is not None and posted
        await self._surface.log_case(outcome.action)
        note = "" if posted else " I couldn't post in the thread itself (it may have been deleted)."
        await _say(respond, f"Reopened the thread of case #{number} (filed as case #{outcome.action.case_id})."
                   + note)


def _number(word: str) -> int | None:
    word = word.lstrip("#")
    return int(word) if word.isdigit() and len(word) < 10 else None


def _transcript_preview(case: Case) -> str:
    text = translate.escape(render_case_text(case))
    if len(text) <= _TRANSCRIPT_PREVIEW:
        return text
    return "…" + text[-_TRANSCRIPT_PREVIEW:]


async def _say(respond: Respond, text: str, **extra: Any) -> None:
    """Answer the invoking user only; a failed answer is logged, never raised."""
    try:
        await respond(text=text, response_type="ephemeral", replace_original=False, **extra)
    except API_ERRORS as exc:
        log.warning("command response failed (%s)", error_code(exc))
