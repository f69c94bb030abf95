"""Mod-log posts: one Block Kit message per case, the transcript attached as a file (or, when the
upload is refused, posted as a snippet in the post's thread)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.text import isolate, split_text
from bot.casefile import render_case_text
from bot.participants import listed
from bot.review import AppealAnswer
from bot.types import CATEGORY_LABELS, Case, ThreadRef
from config.communities import Communities
from config.slack import SlackSettings

from .replies import API_ERRORS, Poster, error_code
from .translate import Identity, escape, thread_link

log = logging.getLogger(__name__)

_FIELD_LIMIT = 1900
_SECTION_LIMIT = 2900


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def case_link(case: Case, identity: Identity) -> str | None:
    if case.jump_url:
        return case.jump_url
    try:
        return thread_link(identity, ThreadRef.from_key(case.thread))
    except ValueError:
        return None


def case_title(case: Case) -> str:
    title = f"Case #{case.case_id} · {case.action}"
    if case.refers_to is not None:
        title += f" of case #{case.refers_to}"
    return title


def case_blocks(case: Case, identity: Identity) -> list[dict[str, Any]]:
    """The moderator's summary of a case; the details stay in the transcript."""
    link = case_link(case, identity)
    fields = [
        ("Reason", case.reason or "-"),
        ("Category", CATEGORY_LABELS.get(case.category or "", case.category or "-")),
        ("Redirections", str(case.redirect_count)),
        ("Warned", _yes(case.warned)),
        ("Risk flag", _yes(case.at_risk) + (f" \u2014 {case.self_harm_marker}" if case.self_harm_marker else "")),
        ("Ended by" if case.action == "end" else "Moderator", escape(isolate(case.moderator or case.ended_by or "-"))),
        ("Thread", f"<{link}|open thread>" if link else escape(case.thread)),
        ("Participants", listed(case.participants, lambda p: f"<@{escape(p.id)}>") or "-"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(case_title(case), 150)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": _clip(f"*{name}*\n{value}", _FIELD_LIMIT)} for name, value in fields
        ]},
    ]
    if case.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": escape(isolate(_clip(case.summary, _SECTION_LIMIT)))}})
    context = [f"Thread key `{escape(isolate(case.thread))}`", f"at {case.ended_at}"]
    if case.branch_of:
        context.append(f"branched from `{escape(isolate(case.branch_of))}`")
    if case.branches:
        context.append(f"{len(case.branches)} branch(es)")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(" · ".join(context), 2900)}]})
    return blocks


def case_fallback_text(case: Case) -> str:
    """Notification text of the post (shown where blocks are not)."""
    label = CATEGORY_LABELS.get(case.category or "", case.category or "-")
    return f"{case_title(case)}: {case.reason or '-'} ({label})"


def appeal_blocks(answer: AppealAnswer, identity: Identity) -> list[dict[str, Any]]:
    """A member's appeal: who, which case, their sentence (isolated), the thread."""
    assert answer.appeal is not None
    assert answer.case is not None
    appeal, case = answer.appeal, answer.case
    link = case_link(case, identity)
    said = escape(isolate(_clip(appeal.text, 2800))) if appeal.text else "_(no sentence given)_"
    fields = [
        ("Member", f"{escape(isolate(_clip(appeal.member_name, 100)))} (<@{appeal.member_id}>)"),
        ("Ending", f"{case.reason or '-'} · {CATEGORY_LABELS.get(case.category or '', case.category or '-')}"),
        ("Thread", f"<{link}|open thread>" if link else escape(isolate(case.thread))),
    ]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": f"Appeal on case #{case.case_id}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": said}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", _FIELD_LIMIT)}
                                       for k, v in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn",
                                          "text": "Decide in the dashboard's appeals queue: uphold or reopen."}]},
    ]


def alert_blocks(case: Case, identity: Identity, dashboard_url: str | None) -> list[dict[str, Any]]:
    """A risk alert: the case link and who, never the conversation itself."""
    link = case_link(case, identity)
    where = (f"<{dashboard_url.rstrip('/')}/cases/{case.community}/{case.case_id}|case #{case.case_id} in the "
             "dashboard>" if dashboard_url else f"`threadguard cases show {case.case_id} --community "
                                                f"{escape(case.community)}`")
    fields = [("Case", where), ("Thread", f"<{link}|open thread>" if link else escape(isolate(case.thread))),
              ("Participants", listed(case.participants, lambda p: f"<@{escape(p.id)}>") or "-")]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": f"Risk alert · case #{case.case_id}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "The model flagged that a member may be at risk of harming themselves or others. The conversation "
            "goes on and cannot be ended by the model; crisis resources were posted. Please check in.")}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", _FIELD_LIMIT)}
                                       for k, v in fields]},
    ]


class ModLog:
    """Posts each case to its community's mod-log channel. A failed post is logged; the case itself is
    already filed in the store, so moderators still find it in the commands, dashboard and CLI."""

    def __init__(self, client: AsyncWebClient, poster: Poster, communities: Communities,
                 slack: SlackSettings) -> None:
        self._client = client
        self._poster = poster
        self._communities = communities
        self._slack = slack

    async def post(self, case: Case, identity: Identity) -> str | None:
        """Returns the ts of the mod-log post, or ``None`` when there is no channel or posting failed."""
        channel = self._slack.mod_log_for(self._communities.get(case.community))
        if not channel:
            log.info("case %s in %s: no mod-log channel configured", case.case_id, case.community)
            return None
        where = f"mod-log case {case.community}#{case.case_id}"
        ts = await self._poster.post(channel, None, case_fallback_text(case), where=where,
                                     blocks=case_blocks(case, identity), raw=True)
        if ts is None:
            log.error("%s: not posted; the case stays filed (thread %s)", where, case.thread)
            return None
        if case.transcript:
            await self._attach_transcript(case, channel, ts, where)
        return ts

    async def post_alert(self, case: Case, identity: Identity) -> str | None:
        """A risk alert to the mod-log; the transcript goes in its thread only where enabled."""
        config = self._communities.get(case.community)
        channel = self._slack.mod_log_for(config)
        if not channel:
            log.warning("risk alert case %s of %s: no mod-log channel configured", case.case_id, case.community)
            return None
        where = f"mod-log risk alert {case.community}#{case.case_id}"
        ts = await self._poster.post(channel, None, f"Risk alert · case #{case.case_id}", where=where,
                                     blocks=alert_blocks(case, identity, config.dashboard_url), raw=True)
        if ts is not None and config.risk_alert_transcript and case.transcript:
            await self._attach_transcript(case, channel, ts, where)
        return ts

    async def post_line(self, community: str, text: str) -> str | None:
        """One line to the community's mod-log (a spend alert)."""
        channel = self._slack.mod_log_for(self._communities.get(community))
        if not channel:
            log.warning("mod-log line for %s: no mod-log channel configured", community)
            return None
        return await self._poster.post(channel, None, text, where=f"mod-log {community}")

    async def post_appeal(self, answer: AppealAnswer, identity: Identity) -> str | None:
        """Tell the mod-log that a member appealed; a failure is logged, the appeal stays filed."""
        if answer.case is None or answer.appeal is None:
            return None
        case = answer.case
        channel = self._slack.mod_log_for(self._communities.get(case.community))
        if not channel:
            return None
        where = f"mod-log appeal {case.community}#{case.case_id}"
        return await self._poster.post(channel, None, f"Appeal on case #{case.case_id}", where=where,
                                       blocks=appeal_blocks(answer, identity), raw=True)

    async def _attach_transcript(self, case: Case, channel: str, ts: str, where: str) -> None:
        text = render_case_text(case)
        try:
            await self._client.files_upload_v2(
                channel=channel, thread_ts=ts, content=text, filename=f"case-{case.case_id}.txt",
                title=f"Transcript of case #{case.case_id}", snippet_type="text")
            return
        except API_ERRORS as exc:
            log.warning("%s: transcript upload failed (%s); posting it as a snippet", where, error_code(exc))
        limit = self._poster.limit - 8
        for piece in split_text(text, limit):
            await self._poster.post(channel, ts, f"```{escape(piece)}```", where=where, raw=True)
