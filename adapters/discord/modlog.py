"""Mod-log posts: one embed per case with the transcript attached as a text file."""

from __future__ import annotations

import asyncio
import io
import logging

import discord

from adapters.text import isolate
from bot.casefile import render_case_text
from bot.participants import listed
from bot.review import AppealAnswer
from bot.types import CATEGORY_LABELS, Case, ThreadRef
from config.communities import Communities

from .translate import ref_url

log = logging.getLogger(__name__)

_COLOURS = {"end": discord.Colour.red(), "reopen": discord.Colour.green()}
_FIELD_LIMIT = 1024


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _clip(text: str, limit: int = _FIELD_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _thread_link(case: Case) -> str:
    try:
        url = case.jump_url or ref_url(ThreadRef.from_key(case.thread))
    except ValueError:
        return case.thread
    return f"[open thread]({url})"


def case_embed(case: Case) -> discord.Embed:
    """The moderator's summary of a case; details stay in the attached transcript."""
    title = f"Case #{case.case_id} · {case.action}"
    if case.refers_to is not None:
        title += f" of case #{case.refers_to}"
    embed = discord.Embed(title=title, colour=_COLOURS.get(case.action, discord.Colour.orange()),
                          description=isolate(_clip(case.summary, 3990)) if case.summary else None)
    if case.self_harm_marker:
        embed.add_field(name="\u26a0\ufe0f Check on this member", value=case.self_harm_marker, inline=False)
    embed.add_field(name="Reason", value=case.reason or "-")
    embed.add_field(name="Category", value=CATEGORY_LABELS.get(case.category or "", case.category or "-"))
    embed.add_field(name="Redirections", value=str(case.redirect_count))
    embed.add_field(name="Warned", value=_yes(case.warned))
    embed.add_field(name="Risk flag", value=_yes(case.at_risk))
    embed.add_field(name="Thread", value=_thread_link(case))
    embed.add_field(name="Ended by" if case.action == "end" else "Moderator",
                    value=isolate(_clip(case.moderator or case.ended_by or "-", 1000)))
    if case.participants:
        embed.add_field(name="Participants", inline=False,
                        value=_clip(listed(case.participants, lambda p: f"{isolate(_clip(p.name, 100))} (<@{p.id}>)")))
    if case.branch_of:
        embed.add_field(name="Branched from", value=isolate(_clip(case.branch_of, 1000)), inline=False)
    if case.branches:
        embed.add_field(name="Branches", value=_clip(", ".join(case.branches)), inline=False)
    embed.set_footer(text=f"{case.platform} · {isolate(case.thread)}")
    if case.ended_at:
        embed.timestamp = discord.utils.parse_time(case.ended_at)
    return embed


def appeal_embed(answer: AppealAnswer) -> discord.Embed:
    """A member's appeal: who, which case, their sentence (isolated), the thread."""
    assert answer.appeal is not None
    assert answer.case is not None
    appeal, case = answer.appeal, answer.case
    embed = discord.Embed(title=f"Appeal on case #{case.case_id}", colour=discord.Colour.gold(),
                          description=isolate(_clip(appeal.text, 3990)) if appeal.text else "(no sentence given)")
    embed.add_field(name="Member", value=f"{isolate(_clip(appeal.member_name, 100))} (<@{appeal.member_id}>)")
    embed.add_field(name="Ending", value=f"{case.reason or '-'} · "
                                         f"{CATEGORY_LABELS.get(case.category or '', case.category or '-')}")
    embed.add_field(name="Thread", value=_thread_link(case))
    embed.set_footer(text="Decide in the dashboard's appeals queue: uphold or reopen.")
    return embed


def case_address(case: Case, dashboard_url: str | None) -> str:
    """Where a moderator opens the case: its dashboard page, or the CLI command."""
    if dashboard_url:
        return f"{dashboard_url.rstrip('/')}/cases/{case.community}/{case.case_id}"
    return f"`threadguard cases show {case.case_id} --community {case.community}`"


def alert_embed(case: Case, dashboard_url: str | None) -> discord.Embed:
    """A risk alert: the case link and who, never the conversation itself."""
    embed = discord.Embed(title=f"Risk alert · case #{case.case_id}", colour=discord.Colour.purple(),
                          description="The model flagged that a member may be at risk of harming themselves or "
                                      "others. The conversation goes on and cannot be ended by the model; crisis "
                                      "resources were posted. Please check in.")
    embed.add_field(name="Case", value=case_address(case, dashboard_url), inline=False)
    embed.add_field(name="Thread", value=_thread_link(case))
    if case.participants:
        embed.add_field(name="Participants", inline=False,
                        value=_clip(listed(case.participants, lambda p: f"{isolate(_clip(p.name, 100))} (<@{p.id}>)")))
    if case.ended_at:
        embed.timestamp = discord.utils.parse_time(case.ended_at)
    return embed


def transcript_file(case: Case) -> discord.File:
    data = io.BytesIO(render_case_text(case).encode("utf-8"))
    return discord.File(data, filename=f"case-{case.case_id}.txt")


class ModLog:
    """Posts cases to each community's mod-log channel. A post that fails is logged with the case
    number; the case itself is already filed in the store and stays visible to moderators."""

    def __init__(self, client: discord.Client, communities: Communities, *, attempts: int = 3,
                 retry_delay: float = 2.0) -> None:
        self._client = client
        self._communities = communities
        self._attempts = attempts
        self._retry_delay = retry_delay

    async def post_alert(self, case: Case) -> None:
        """A risk alert to the mod-log, once per flagged thread; the transcript only where enabled."""
        config = self._communities.get(case.community)
        if not config.mod_log_channel:
            log.warning("risk alert case %s of %s: no mod-log channel configured", case.case_id, case.community)
            return
        extra: dict[str, discord.File] = {"file": transcript_file(case)} if config.risk_alert_transcript else {}
        try:
            await self._client.get_partial_messageable(int(config.mod_log_channel)).send(
                embed=alert_embed(case, config.dashboard_url), allowed_mentions=discord.AllowedMentions.none(),
                **extra)  # type: ignore[call-overload]
        except discord.HTTPException as exc:
            log.error("risk alert case %s of %s is filed but the mod-log post failed (HTTP %s)", case.case_id,
                      case.community, exc.status)

    async def post_line(self, community: str, text: str) -> None:
        """One line to the community's mod-log (a spend alert); a failure is logged."""
        channel_id = self._communities.get(community).mod_log_channel
        if not channel_id:
            log.warning("mod-log line for %s: no mod-log channel configured", community)
            return
        try:
            await self._client.get_partial_messageable(int(channel_id)).send(
                text, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.error("mod-log line for %s not posted (HTTP %s)", community, exc.status)

    async def post_appeal(self, answer: AppealAnswer) -> None:
        """Tell the mod-log that a member appealed (one post; a failure is logged, the appeal is filed)."""
        if answer.case is None or answer.appeal is None:
            return
        community = answer.case.community
        channel_id = self._communities.get(community).mod_log_channel
        if not channel_id:
            return
        try:
            await self._client.get_partial_messageable(int(channel_id)).send(
                embed=appeal_embed(answer), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.error("appeal on case %s of %s is filed but the mod-log post failed (HTTP %s)",
                      answer.case.case_id, community, exc.status)

    async def post(self, case: Case) -> discord.Message | None:
        channel_id = self._communities.get(case.community).mod_log_channel
        if not channel_id:
            log.info("case %s of %s filed; no mod-log channel configured", case.case_id, case.community)
            return None
        channel = self._client.get_partial_messageable(int(channel_id))
        for attempt in range(1, self._attempts + 1):
            try:
                return await channel.send(embed=case_embed(case), file=transcript_file(case),
                                          allowed_mentions=discord.AllowedMentions.none())
            except (discord.Forbidden, discord.NotFound) as exc:
                log.error("mod-log channel %s refused case %s of %s (HTTP %s, code %s): grant the bot View "
                          "Channel, Send Messages, Embed Links and Attach Files there", channel_id,
                          case.case_id, case.community, exc.status, exc.code)
                return None
            except (TimeoutError, discord.HTTPException, OSError) as exc:
                status = getattr(exc, "status", type(exc).__name__)
                log.warning("mod-log post of case %s of %s failed (attempt %d/%d, %s)", case.case_id,
                            case.community, attempt, self._attempts, status)
                if attempt < self._attempts:
                    await asyncio.sleep(self._retry_delay * attempt)
        # Names the case and the community, never message text: the case itself is safe in the store.
        log.error("case %s of community %s was filed but not posted to the mod-log after %d attempt(s); it is "
                  "in `threadguard cases list`, the dashboard and /threadguard case %s", case.case_id,
                  case.community, self._attempts, case.case_id,
                  extra={"case_id": case.case_id, "community": case.community})
        return None
