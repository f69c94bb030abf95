"""A local stand-in for Discord: the REST API and the gateway websocket, as discord.py 2.x uses them.

A real ``discord.Client`` connects to it (point ``discord.http.Route.BASE`` at ``api_base_url`` and
``DiscordWebSocket.DEFAULT_GATEWAY`` at ``gateway_url``). Tests then act as members (post, edit, run
slash commands, click buttons) and assert on ``calls``: every REST request the bot made, in order.

What it speaks:
- gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE (per shard: a guild goes to shard
  ``(guild_id >> 22) % count``, DMs to shard 0; a shard outside the count is closed with 4010),
  heartbeats, RESUME (replays what the session missed, then RESUMED), op 7 RECONNECT, and the dispatches
  MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE / INTERACTION_CREATE / THREAD_CREATE / THREAD_UPDATE;
  messages the bot posts come back as MESSAGE_CREATE, as on Discord. ``add_guild(shard=...)`` puts a
  guild on a chosen shard; ``identified_shards(token)`` and ``RestCall.token`` tell processes apart.
- interactions: slash commands, message context-menu commands (type 3, with the resolved target
  message), button clicks, and modal submits built from the modal the bot answered with.
- REST: users/@me, oauth2/applications/@me, gateway(/bot), command bulk overwrite, messages (JSON and
  multipart with attachments), edits, deletes, typing, threads from a message (error 160004 when it
  exists) and without one, modify channel (locked/archived), thread members, fetch channel,
  interaction callbacks, original response, followups.
- faults: ``fail()`` injects 429 (with ``retry_after``, as Discord's edge sends it), 5xx, 403 (50013)
  or 400 (50083); ``delete_channel()`` makes a channel answer 404 (10003); ``moderator_delete()``
  removes a message (MESSAGE_DELETE), after which editing it answers 404 (10008 Unknown Message);
  posting to a locked, archived thread answers 50083 unless the bot may manage threads; content over
  2,000 characters answers 400 (50035 Invalid Form Body), as Discord does.
- rate limits (opt-in): ``limit_edits()`` limits message edits per channel as Discord does, with its
  ``X-RateLimit-*`` headers on every edit's answer and a 429 past the limit (what discord.py obeys).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.discord_oauth import MANAGE_GUILD, DiscordOAuth

API = "/api/v10"
BASE_ID = 1_200_000_000_000_000_000
EVERYONE_PERMISSIONS = 0x400 | 0x800 | 0x10000 | 0x4000 | 0x8000 | 0x40000 | 0x80000000 | 0x800000000 | 0x4000000000
MANAGE_MESSAGES = 0x2000
MANAGE_THREADS = 0x400000000
ADMIN_LIKE = EVERYONE_PERMISSIONS | MANAGE_MESSAGES | MANAGE_THREADS
EPHEMERAL = 64
CONTENT_LIMIT = 2000
EDIT_BUCKET = "a1b2c3d4e5f60789"  # the bucket hash Discord names for message edits (per channel)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RestCall:
    """One REST request the bot made and what the stand-in answered."""

    method: str
    path: str
    json: Any = None
    files: list[tuple[str, bytes]] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200
    reason: str | None = None
    #: The bot token the request carried (``Authorization: Bot <token>``): which process made it.
    token: str | None = None
    at: float = field(default_factory=time.monotonic)

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} -> {self.status}>"


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: int
    times: int
    retry_after: float


@dataclass
class Interaction:
    """An interaction the stand-in sent and everything the bot answered to it."""

    id: str
    token: str
    payload: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m in [self.original, *self.followups] if m is not None]

    def texts(self) -> list[str]:
        return [m.get("content", "") for m in self.messages]


class Session:
    """One gateway session (a shard); survives reconnects through RESUME."""

    def __init__(self, session_id: str, shard: tuple[int, int]) -> None:
        self.id = session_id
        self.shard = shard
        self.seq = 0
        self.log: list[dict[str, Any]] = []
        self.ws: web.WebSocketResponse | None = None
        self.resumes = 0
        #: Dispatches to send again on the next RESUME (at-least-once delivery).
        self.redeliver = 0


class DiscordStandin:
    """Run with ``await start()``; ``stop()`` closes every socket. One process, loopback only."""

    def __init__(self) -> None:
        self._ids = itertools.count(BASE_ID)
        self.app_id = self.new_id()
        self.bot = self._user("threadguard", bot=True, id=self.app_id)
        self.guild_id = self.new_id()
        self.other_guild_id = self.new_id()
        self.mod_role_id = self.new_id()
        self.general_id = self.new_id()
        self.modlog_id = self.new_id()
        self.other_channel_id = self.new_id()
        self.elsewhere_id = self.new_id()  # a channel in the other guild
        self.alice = self._user("alice")
        self.bob = self._user("bob")
        self.mod = self._user("mod")
        self.other_bot = self._user("otherbot", bot=True)
        self.member_roles: dict[str, list[str]] = {self.mod["id"]: [self.mod_role_id]}
        self.channels: dict[str, dict[str, Any]] = {}
        self.guilds: dict[str, dict[str, Any]] = {}
        self._add_guild(self.guild_id, "Community", [self.general_id, self.modlog_id, self.other_channel_id])
        self._add_guild(self.other_guild_id, "Elsewhere", [self.elsewhere_id])
        self.messages: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.calls: list[RestCall] = []
        self.unknown: list[RestCall] = []
        self.failures: list[Failure] = []
        self.interactions: dict[str, Interaction] = {}
        self.commands: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.sessions: list[Session] = []
        self.bot_manages_threads = True
        #: Message edits allowed per channel and window (seconds), when a test turns it on (``limit_edits``).
        self.edit_limit: tuple[int, float] | None = None
        self._edit_windows: dict[str, tuple[float, int]] = {}  # channel -> (window closes, edits in it)
        self.heartbeats = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        #: Set by a test harness that runs the bot in this process: ids of member messages the bot has
        #: finished handling, and whether it still has work in hand (``settle`` waits for both).
        self.handled: set[str] | None = None
        #: Members' files served at ``/attachments/<id>/<name>``; the ids requested, and those sent whole.
        self.files: dict[str, bytes] = {}
        self.file_requests: list[str] = []
        self.files_served_whole: set[str] = set()
        self.busy: Callable[[], bool] | None = None
        self.port = 0
        # Sign-in with Discord (``tests.support.discord_oauth``): ann administers the guild (an Admins role
        # with Manage Server), mod moderates it (the Moderators role), alice and bob are members.
        self.ann = self._user("ann")
        self.admin_role_id = self.new_id()
        self.guilds[self.guild_id]["roles"].append({
            "id": self.admin_role_id, "name": "Admins", "permissions": str(EVERYONE_PERMISSIONS | MANAGE_GUILD),
            "position": 2, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0})
        self.member_roles[self.ann["id"]] = [self.admin_role_id]
        self.oauth = DiscordOAuth(self)
        self.oauth.join(self.guild_id, self.alice, self.bob, self.mod, self.ann)
        self.oauth.join(self.other_guild_id, self.alice)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        self.oauth.routes(app, API)
        app.router.add_get("/attachments/{id}/{name}", self._serve_file)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for session in self.sessions:
            if session.ws is not None and not session.ws.closed:
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- the world -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(next(self._ids))

    def _user(self, name: str, *, bot: bool = False, id: str | None = None) -> dict[str, Any]:
        return {"id": id or self.new_id(), "username": name, "discriminator": "0", "global_name": name,
                "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}

    def _add_guild(self, guild_id: str, name: str, channel_ids: list[str]) -> None:
        names = {self.general_id: "general", self.modlog_id: "mod-log", self.other_channel_id: "off-topic"}
        for position, cid in enumerate(channel_ids):
            self.channels[cid] = {"id": cid, "type": 0, "guild_id": guild_id, "name": names.get(cid, "chat"),
                                  "position": position, "permission_overwrites": [], "nsfw": False,
                                  "parent_id": None, "topic": None, "last_message_id": None,
                                  "rate_limit_per_user": 0}
        roles = [{"id": guild_id, "name": "@everyone", "permissions": str(EVERYONE_PERMISSIONS), "position": 0,
                  "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}]
        if guild_id == self.guild_id:
            roles.append({"id": self.mod_role_id, "name": "Moderators", "permissions": str(EVERYONE_PERMISSIONS),
                          "position": 1, "color": 0, "hoist": False, "managed": False, "mentionable": False,
                          "flags": 0})
        self.guilds[guild_id] = {"id": guild_id, "name": name, "owner_id": self.new_id(), "roles": roles,
                                 "channel_ids": channel_ids}

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> tuple[str, str]:
        """Another guild with one text channel; returns (guild id, channel id). With ``shard=(id, count)``
        its id is one that shard serves (Discord's rule: ``(guild_id >> 22) % count``)."""
        guild_id = int(self.new_id())
        if shard is not None:
            shard_id, count = shard
            base = (guild_id >> 22) + 1000 * len(self.guilds)
            guild_id = (base - base % count + shard_id) << 22
        channel_id = self.new_id()
        self._add_guild(str(guild_id), name, [channel_id])
        return str(guild_id), channel_id

    def identified_shards(self, token: str | None = None) -> list[tuple[int, int]]:
        """The ``[shard_id, shard_count]`` of every IDENTIFY (only those sent with ``token``, if given)."""
        return [(int(i["shard"][0]), int(i["shard"][1])) if "shard" in i else (0, 1) for i in self.identifies
                if token is None or i.get("token") == token]

    def member(self, user: dict[str, Any], permissions: int | None = None) -> dict[str, Any]:
        data = {"user": user, "roles": list(self.member_roles.get(user["id"], [])), "joined_at": now_iso(),
                "deaf": False, "mute": False, "flags": 0, "nick": None, "avatar": None,
                "pending": False, "communication_disabled_until": None}
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def _guild_create(self, guild_id: str) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        channels = [self._public(self.channels[c]) for c in guild["channel_ids"]]
        threads = [self._public(c) for c in self.channels.values()
                   if c.get("guild_id") == guild_id and c["type"] == 11 and not c["thread_metadata"]["archived"]
                   and c["id"] not in self.deleted]
        return {"id": guild_id, "name": guild["name"], "icon": None, "owner_id": guild["owner_id"],
                "roles": guild["roles"], "emojis": [], "stickers": [], "features": [], "channels": channels,
                "threads": threads, "members": [self.member(self.bot)], "member_count": 4,
                "large": False, "unavailable": False, "verification_level": 0, "default_message_notifications": 0,
                "explicit_content_filter": 0, "mfa_level": 0, "afk_timeout": 300, "premium_tier": 0,
                "preferred_locale": "en-US", "nsfw_level": 0, "system_channel_flags": 0, "voice_states": [],
                "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
                "joined_at": now_iso(), "application_id": None, "max_members": 1000}

    @staticmethod
    def _public(channel: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in channel.items() if not k.startswith("_")}

    def thread(self, thread_id: str) -> dict[str, Any]:
        return self.channels[thread_id]

    def threads(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["type"] in (11, 12)]

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    def bot_texts(self, channel_id: str) -> list[str]:
        return [m["content"] for m in self.channel_messages(channel_id) if m["author"]["id"] == self.bot["id"]]

    def delete_channel(self, channel_id: str) -> None:
        self.deleted.add(channel_id)

    async def moderator_delete(self, message_id: str) -> None:
        """A moderator deletes a message (the bot's, say): it is gone for every later request."""
        data = self.messages.pop(message_id)
        payload = {"id": message_id, "channel_id": data["channel_id"]}
        if data.get("guild_id"):
            payload["guild_id"] = data["guild_id"]
        await self.dispatch("MESSAGE_DELETE", payload, data.get("guild_id"))

    def fail(self, method: str, path_regex: str, status: int, *, code: int = 0, times: int = 1,
             retry_after: float = 0.05) -> None:
        """The next ``times`` matching requests answer ``status`` (429 carries ``retry_after``)."""
        self.failures.append(Failure(method.upper(), re.compile(path_regex), status, code, times, retry_after))

    # --- acting as members ---------------------------------------------------------------------

    def limit_edits(self, per: int = 5, seconds: float = 5.0) -> None:
        """Limit message edits per channel as Discord does: ``per`` in a window of ``seconds`` that opens with
        the first edit after the last window closed. Every edit's answer carries the bucket's
        ``X-RateLimit-*`` headers; one past the limit answers 429 with Discord's body (``retry_after`` until
        the window closes, ``global: false``) and edits nothing."""
        self.edit_limit = (per, seconds)

    def _message(self, channel_id: str, author: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
        channel = self.channels.get(channel_id, {})
        mentions = [self.bot] if f"<@{self.bot['id']}>" in content else []
        data = {"id": extra.pop("id", None) or self.new_id(), "channel_id": channel_id, "author": author,
                "content": content, "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": mentions, "mention_roles": [], "attachments": [],
                "embeds": [], "pinned": False, "type": 0, "flags": 0, "components": []}
        if channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
        data.update(extra)
        return data

    def attachment(self, name: str, data: bytes, content_type: str | None, *,
                   size: int | None = None) -> dict[str, Any]:
        """A file a member attaches, served by this stand-in at its own address (as the CDN serves it);
        ``size`` is what the message claims (a liar's, when it differs from the bytes)."""
        file_id = self.new_id()
        self.files[file_id] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{file_id}/{name}?ex=1&is=2&hm=sig"
        record: dict[str, Any] = {"id": file_id, "filename": name, "size": len(data) if size is None else size,
                                  "url": url, "proxy_url": url}
        if content_type:
            record["content_type"] = content_type
        return record

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["id"]
        data = self.files.get(file_id)
        self.file_requests.append(file_id)
        if data is None:
            return web.Response(status=404)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        try:
            for i in range(0, len(data), 256 * 1024):
                await response.write(data[i:i + 256 * 1024])
                await asyncio.sleep(0.002)  # as a CDN sends it: a client that stops reading is noticed
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            return response  # the client stopped reading
        self.files_served_whole.add(file_id)
        return response

    async def post(self, channel_id: str, content: str, author: dict[str, Any] | None = None,
                   *, mention: bool = False, attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A member posts a message (mentioning the bot first when ``mention``), with ``attachments`` made by
        ``attachment``."""
        author = author or self.alice
        channel = self.channels.get(channel_id)
        if channel is not None and channel["type"] == 11 and channel["thread_metadata"]["locked"]:
            raise PermissionError("members cannot post in a locked thread")
        text = f"<@{self.bot['id']}> {content}" if mention else content
        data = self._message(channel_id, author, text, attachments=list(attachments or []))
        self.messages[data["id"]] = data
        payload = dict(data)
        if "guild_id" in data:
            payload["member"] = {k: v for k, v in self.member(author).items() if k != "user"}
        await self.dispatch("MESSAGE_CREATE", payload, data.get("guild_id"))
        return data

    async def edit(self, message_id: str, content: str) -> dict[str, Any]:
        """A member edits one of their messages (a full MESSAGE_UPDATE, as Discord sends now)."""
        data = self.messages[message_id]
        data["content"] = content
        data["mentions"] = [self.bot] if f"<@{self.bot['id']}>" in content else []  # as Discord re-reads them
        data["edited_timestamp"] = now_iso()
        await self.dispatch("MESSAGE_UPDATE", dict(data), data.get("guild_id"))
        return data

    def open_dm(self, user: dict[str, Any]) -> str:
        cid = self.new_id()
        self.channels[cid] = {"id": cid, "type": 1, "recipients": [user], "last_message_id": None}
        return cid

    async def slash(self, name: str, channel_id: str, user: dict[str, Any] | None = None, *,
                    options: list[dict[str, Any]] | None = None, subcommand: str | None = None,
                    permissions: int = EVERYONE_PERMISSIONS) -> Interaction:
        """A member runs a slash command (``subcommand`` for ``/threadguard case`` and friends)."""
        registered = next((c for c in self.commands if c["name"] == name), None)
        opts = options or []
        if subcommand is not None:
            opts = [{"type": 1, "name": subcommand, "options": opts}]
        data = {"id": registered["id"] if registered else self.new_id(), "name": name, "type": 1, "options": opts}
        return await self._interact(2, data, channel_id, user or self.alice, permissions)

    async def click(self, interaction: Interaction, custom_id: str, user: dict[str, Any] | None = None,
                    permissions: int = EVERYONE_PERMISSIONS) -> Interaction:
        """Click a button on the (ephemeral) message the bot answered ``interaction`` with."""
        message = interaction.original
        assert message is not None, "the interaction has no response message"
        channel_id = message["channel_id"]
        return await self._interact(3, {"custom_id": custom_id, "component_type": 2}, channel_id,
                                    user or self.alice, permissions, message=message)

    async def message_command(self, name: str, message: dict[str, Any], user: dict[str, Any] | None = None,
                              permissions: int = EVERYONE_PERMISSIONS) -> Interaction:
        """A member runs a message context-menu command (type 3) on ``message``, where it was posted."""
        registered = next((c for c in self.commands if c["name"] == name and c.get("type") == 3), None)
        target = self._public(self.messages.get(message["id"], message))
        data = {"id": registered["id"] if registered else self.new_id(), "name": name, "type": 3,
                "target_id": target["id"], "resolved": {"messages": {target["id"]: target}}}
        return await self._interact(2, data, target["channel_id"], user or self.alice, permissions)

    async def submit_modal(self, opened: Interaction, values: dict[str, str],
                           user: dict[str, Any] | None = None) -> Interaction:
        """Submit the modal the bot answered ``opened`` with, typing ``values`` (by input custom_id).
        Like Discord's client, refuses values over ``max_length`` and empty required inputs."""
        [callback] = opened.callbacks
        assert callback.get("type") == 9, f"the bot answered with callback type {callback.get('type')}, not a modal"
        modal = callback["data"]
        components = [self._submitted(c, values) for c in modal["components"]]
        member = (opened.payload.get("member") or {}).get("user") or opened.payload.get("user")
        data = {"custom_id": modal["custom_id"], "components": components}
        return await self._interact(5, data, opened.payload["channel_id"], user or member, EVERYONE_PERMISSIONS)

    def _submitted(self, component: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
        kind = component["type"]
        if kind == 1:  # action row (the older modal layout)
            return {"type": 1, "components": [self._submitted(c, values) for c in component["components"]]}
        if kind == 18:  # label around one input
            return {"type": 18, "id": component.get("id"), "component": self._submitted(component["component"],
                                                                                         values)}
        assert kind == 4, f"unexpected modal component type {kind}"
        value = values.get(component["custom_id"], component.get("value") or "")
        if len(value) > int(component.get("max_length") or 4000):
            raise ValueError("Discord's client does not submit more than max_length characters")
        if component.get("required", True) and not value:
            raise ValueError("Discord's client does not submit an empty required input")
        return {"type": 4, "id": component.get("id"), "custom_id": component["custom_id"], "value": value}

    async def _interact(self, kind: int, data: dict[str, Any], channel_id: str, user: dict[str, Any],
                        permissions: int, message: dict[str, Any] | None = None) -> Interaction:
        iid, token = self.new_id(), f"tok-{self.new_id()}"
        channel = self._public(self.channels[channel_id])
        payload: dict[str, Any] = {
            "id": iid, "application_id": self.app_id, "type": kind, "data": data, "token": token, "version": 1,
            "channel_id": channel_id, "channel": channel, "app_permissions": str(ADMIN_LIKE), "locale": "en-US",
            "attachment_size_limit": 10 * 1024 * 1024, "entitlements": [], "authorizing_integration_owners": {},
        }
        guild_id = channel.get("guild_id")
        if guild_id:
            payload["guild_id"] = guild_id
            payload["guild_locale"] = "en-US"
            payload["member"] = self.member(user, permissions)
            payload["context"] = 0
        else:
            payload["user"] = user
            payload["context"] = 1
        if message is not None:
            payload["message"] = message
        record = Interaction(iid, token, payload)
        self.interactions[iid] = record
        await self.dispatch("INTERACTION_CREATE", payload, guild_id)
        return record

    # --- gateway -------------------------------------------------------------------------------

    def _covers(self, session: Session, guild_id: str | None) -> bool:
        shard_id, count = session.shard
        if guild_id is None:
            return shard_id == 0
        return (int(guild_id) >> 22) % count == shard_id

    async def dispatch(self, event: str, data: dict[str, Any], guild_id: str | None = None) -> None:
        for session in self.sessions:
            if self._covers(session, guild_id):
                await self._send_event(session, event, data)

    async def _send_event(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.ws is not None and not session.ws.closed:
            await session.ws.send_str(json.dumps(frame))

    async def request_reconnect(self, *, redeliver_last: int = 0) -> None:
        """Send op 7 on every session. On RESUME the missed events are replayed; ``redeliver_last``
        also sends the last N dispatches again (Discord's delivery is at least once)."""
        for session in self.sessions:
            session.redeliver = redeliver_last
            if session.ws is not None and not session.ws.closed:
                await session.ws.send_str(json.dumps({"op": 7, "d": None}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        session: Session | None = None
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == 1:
                self.heartbeats += 1
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                shard = frame["d"].get("shard", (0, 1))
                if not 0 <= int(shard[0]) < int(shard[1]):
                    await ws.close(code=4010, message=b"Invalid shard")  # as Discord closes it
                    break
                session = await self._identify(ws, frame["d"])
            elif op == 6:
                session = await self._resume(ws, frame["d"])
        if session is not None and session.ws is ws:
            session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session:
        self.identifies.append(data)
        shard = tuple(data.get("shard", (0, 1)))
        session = Session(f"session-{self.new_id()}", (int(shard[0]), int(shard[1])))
        session.ws = ws
        self.sessions.append(session)
        guilds = [g for g in self.guilds if self._covers(session, g)]
        ready = {"v": 10, "user": self.bot, "guilds": [{"id": g, "unavailable": True} for g in guilds],
                 "session_id": session.id, "resume_gateway_url": self.gateway_url, "shard": list(session.shard),
                 "application": {"id": self.app_id, "flags": 0}, "private_channels": [], "relationships": [],
                 "user_settings": {}, "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": []}
        await self._send_event(session, "READY", ready)
        for g in guilds:
            await self._send_event(session, "GUILD_CREATE", self._guild_create(g))
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        session = next((s for s in self.sessions if s.id == data.get("session_id")), None)
        if session is None:
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return None
        session.ws = ws
        session.resumes += 1
        seen = int(data.get("seq") or 0)
        again, session.redeliver = session.redeliver, 0
        replay = [f for f in session.log if f["s"] > seen]
        redeliver = [f for f in session.log if f["s"] <= seen and f["t"] not in ("READY", "GUILD_CREATE")]
        for frame in replay:
            await ws.send_str(json.dumps(frame))
        for frame in redeliver[-again:] if again else []:
            await self._send_event(session, frame["t"], frame["d"])
        await self._send_event(session, "RESUMED", {})
        return session

    # --- REST ----------------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/users/@me/guilds", self._my_guilds),
            ("GET", r"/guilds/(\d+)", self._guild),
            ("GET", r"/guilds/(\d+)/channels", self._guild_channels),
            ("GET", r"/guilds/(\d+)/members/(\d+)", self._guild_member),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("GET", r"/gateway", lambda call: {"url": self.gateway_url}),
            ("GET", r"/gateway/bot", self._gateway_bot),
            ("PUT", r"/applications/(\d+)/commands", self._bulk_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._bulk_guild_commands),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_message),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)", self._delete_message),
            ("POST", r"/channels/(\d+)/typing", lambda call, cid: self._existing(cid) and None),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self._thread_from_message),
            ("POST", r"/channels/(\d+)/threads", self._thread_without_message),
            ("PUT", r"/channels/(\d+)/thread-members/(\d+|@me)", lambda call, cid, uid: self._existing(cid) and None),
            ("GET", r"/channels/(\d+)", lambda call, cid: self._public(self._existing(cid))),
            ("PATCH", r"/channels/(\d+)", self._modify_channel),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/@original", self._get_original),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", self._edit_original),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(\d+)", self._edit_followup),
        ]

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        call = RestCall(request.method, path, query=dict(request.query),
                        reason=request.headers.get("X-Audit-Log-Reason"),
                        token=request.headers.get("Authorization", "").removeprefix("Bot ") or None)
        await self._read_body(request, call)
        self.calls.append(call)
        failure = self._failure_for(call)
        if failure is not None:
            return self._error_response(call, failure)
        limited, headers = self._edit_bucket(call)
        if limited is not None:
            return limited
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if method == request.method and match:
                try:
                    result = handler(call, *match.groups())
                except _ApiError as err:
                    call.status = err.status
                    return _json(err.body(), err.status, headers)
                if result is None:
                    call.status = 204
                    return web.Response(status=204, headers=headers)
                return _json(result, headers=headers)
        call.status = 404
        self.unknown.append(call)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    async def _read_body(self, request: web.Request, call: RestCall) -> None:
        if request.content_type == "application/json":
            call.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            form = await request.post()
            for name, value in form.items():
                if name == "payload_json":
                    call.json = json.loads(str(value))
                elif hasattr(value, "file"):
                    call.files.append((value.filename, value.file.read()))

    def _failure_for(self, call: RestCall) -> Failure | None:
        for failure in self.failures:
            if failure.times > 0 and failure.method == call.method and failure.pattern.fullmatch(call.path):
                failure.times -= 1
                return failure
        return None

    def _edit_bucket(self, call: RestCall) -> tuple[web.Response | None, dict[str, str]]:
        """With ``limit_edits``: a 429 for an edit past its channel's limit, else the headers its answer carries."""
        match = re.fullmatch(r"/channels/(\d+)/messages/\d+", call.path)
        if self.edit_limit is None or call.method != "PATCH" or match is None:
            return None, {}
        per, seconds = self.edit_limit
        now = time.monotonic()
        closes, used = self._edit_windows.get(match[1], (0.0, 0))
        if now >= closes:
            closes, used = now + seconds, 0
        left = closes - now
        headers = {"X-RateLimit-Limit": str(per), "X-RateLimit-Remaining": str(max(0, per - used - 1)),
                   "X-RateLimit-Reset": f"{time.time() + left:.3f}", "X-RateLimit-Reset-After": f"{left:.3f}",
                   "X-RateLimit-Bucket": EDIT_BUCKET}
        if used >= per:
            call.status = 429
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": str(math.ceil(left)),
                            "X-RateLimit-Scope": "user", "Via": "1.1 google"})
            body = {"message": "You are being rate limited.", "retry_after": round(left, 3), "global": False}
            return _json(body, 429, headers), headers
        self._edit_windows[match[1]] = (closes, used + 1)
        return None, headers

    def _error_response(self, call: RestCall, failure: Failure) -> web.Response:
        call.status = failure.status
        if failure.status == 429:
            headers = {"Via": "1.1 google", "Retry-After": str(max(1, int(failure.retry_after))),
                       "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset-After": str(failure.retry_after), "X-RateLimit-Bucket": "standin",
                       "X-RateLimit-Scope": "user"}
            body = {"message": "You are being rate limited.", "retry_after": failure.retry_after, "global": False}
            return _json(body, 429, headers)
        messages = {403: "Missing Permissions", 404: "Unknown Channel", 400: "Bad Request"}
        body = {"message": messages.get(failure.status, "Server error"), "code": failure.code}
        return _json(body, failure.status)

    def _existing(self, channel_id: str) -> dict[str, Any]:
        if channel_id in self.deleted or channel_id not in self.channels:
            raise _ApiError(404, 10003, "Unknown Channel")
        return self.channels[channel_id]

    # handlers: (call, *path groups) -> JSON body or None for 204

    def _me(self, call: RestCall) -> dict[str, Any]:
        if call.token and call.token.startswith("Bearer "):
            return self._person(call)
        return self.bot

    def _person(self, call: RestCall) -> dict[str, Any]:
        person = self.oauth.person(call.token)
        if person is None:
            raise _ApiError(401, 0, "401: Unauthorized")
        return person

    def _my_guilds(self, call: RestCall) -> list[dict[str, Any]]:
        return self.oauth.guilds_of(self._person(call))

    def _bot_guild(self, call: RestCall, guild_id: str) -> dict[str, Any]:
        if not call.token or call.token.startswith("Bearer "):
            raise _ApiError(401, 0, "401: Unauthorized")  # the guild reads need the bot's token
        if guild_id not in self.guilds:
            raise _ApiError(404, 10004, "Unknown Guild")
        return self.guilds[guild_id]

    def _guild(self, call: RestCall, guild_id: str) -> dict[str, Any]:
        guild = self._bot_guild(call, guild_id)
        return {"id": guild_id, "name": guild["name"], "owner_id": guild["owner_id"], "roles": guild["roles"]}

    def _guild_channels(self, call: RestCall, guild_id: str) -> list[dict[str, Any]]:
        return [self._public(self.channels[c]) for c in self._bot_guild(call, guild_id)["channel_ids"]]

    def _guild_member(self, call: RestCall, guild_id: str, user_id: str) -> dict[str, Any]:
        self._bot_guild(call, guild_id)
        users = [self.alice, self.bob, self.mod, self.ann]
        user = next((u for u in users if u["id"] == user_id), None)
        if user is None or user_id not in self.oauth.members.get(guild_id, set()):
            raise _ApiError(404, 10007, "Unknown Member")
        return self.member(user)

    def _application(self, call: RestCall) -> dict[str, Any]:
        return {"id": self.app_id, "name": "threadguard", "description": "", "icon": None, "bot_public": True,
                "bot_require_code_grant": False, "owner": self.mod, "verify_key": "00" * 32, "flags": 0,
                "summary": "", "rpc_origins": [], "team": None}

    def _gateway_bot(self, call: RestCall) -> dict[str, Any]:
        return {"url": self.gateway_url, "shards": 2, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    def _registered(self, command: dict[str, Any], app_id: str, **extra: Any) -> dict[str, Any]:
        """A command as Discord returns it: every field filled (context menus get an empty description)."""
        defaults = {"type": 1, "description": "", "options": [], "default_member_permissions": None,
                    "dm_permission": True, "nsfw": False}
        return {**defaults, **{k: v for k, v in command.items() if v is not None}, "id": self.new_id(),
                "application_id": app_id, "version": self.new_id(), **extra}

    def _bulk_commands(self, call: RestCall, app_id: str) -> list[dict[str, Any]]:
        self.commands = [self._registered(c, app_id) for c in call.json]
        return self.commands

    def _bulk_guild_commands(self, call: RestCall, app_id: str, guild_id: str) -> list[dict[str, Any]]:
        return [self._registered(c, app_id, guild_id=guild_id) for c in call.json]

    @staticmethod
    def _check_content(body: dict[str, Any]) -> None:
        """Discord refuses message content over 2,000 characters with a form error."""
        if len(body.get("content") or "") > CONTENT_LIMIT:
            raise _ApiError(400, 50035, "Invalid Form Body", {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {CONTENT_LIMIT} or fewer in length."}]}})

    def _store_bot_message(self, channel_id: str, body: dict[str, Any], files: list[tuple[str, bytes]],
                           **extra: Any) -> dict[str, Any]:
        self._check_content(body)
        attachments = [{"id": self.new_id(), "filename": name, "size": len(data), "url": f"https://cdn/{name}",
                        "proxy_url": f"https://cdn/{name}"} for name, data in files]
        data = self._message(channel_id, self.bot, body.get("content") or "", embeds=body.get("embeds") or [],
                             attachments=attachments, components=body.get("components") or [],
                             flags=int(body.get("flags") or 0), **extra)
        data["_files"] = files
        self.messages[data["id"]] = data
        return data

    def _create_message(self, call: RestCall, channel_id: str) -> dict[str, Any]:
        channel = self._existing(channel_id)
        meta = channel.get("thread_metadata")
        if meta is not None and meta["archived"]:
            if meta["locked"] and not self.bot_manages_threads:
                raise _ApiError(400, 50083, "Thread is archived")
            meta["archived"] = False
            self._later(self.dispatch("THREAD_UPDATE", self._public(channel), channel["guild_id"]))
        data = self._store_bot_message(channel_id, call.json or {}, call.files)
        self._later(self.dispatch("MESSAGE_CREATE", self._public(data), data.get("guild_id")))
        return self._public(data)

    def _edit_message(self, call: RestCall, channel_id: str, message_id: str) -> dict[str, Any]:
        self._existing(channel_id)
        data = self.messages.get(message_id)
        if data is None or data["channel_id"] != channel_id:
            raise _ApiError(404, 10008, "Unknown Message")
        body = call.json or {}
        self._check_content(body)
        if "content" in body:
            data["content"] = body["content"] or ""
        if "embeds" in body:
            data["embeds"] = body["embeds"] or []
        if "components" in body:
            data["components"] = body["components"] or []
        data["edited_timestamp"] = now_iso()
        return self._public(data)

    def _delete_message(self, call: RestCall, channel_id: str, message_id: str) -> None:
        self._existing(channel_id)
        if self.messages.pop(message_id, None) is None:
            raise _ApiError(404, 10008, "Unknown Message")

    def _new_thread(self, parent: dict[str, Any], thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
        thread = {"id": thread_id, "type": int(body.get("type") or 11), "guild_id": parent["guild_id"],
                  "parent_id": parent["id"], "owner_id": self.bot["id"], "name": body.get("name") or "thread",
                  "message_count": 0, "member_count": 1, "rate_limit_per_user": 0, "flags": 0,
                  "last_message_id": None, "total_message_sent": 0,
                  "thread_metadata": {"archived": False, "auto_archive_duration": int(
                      body.get("auto_archive_duration") or 1440), "archive_timestamp": now_iso(),
                      "locked": False, "invitable": True, "create_timestamp": now_iso()}}
        self.channels[thread_id] = thread
        payload = {**thread, "newly_created": True}
        self._later(self.dispatch("THREAD_CREATE", payload, parent["guild_id"]))
        return thread

    def _thread_from_message(self, call: RestCall, channel_id: str, message_id: str) -> dict[str, Any]:
        parent = self._existing(channel_id)
        if message_id not in self.messages:
            raise _ApiError(404, 10008, "Unknown Message")
        if message_id in self.channels:
            raise _ApiError(400, 160004, "A thread has already been created for this message")
        return self._new_thread(parent, message_id, call.json or {})

    def _thread_without_message(self, call: RestCall, channel_id: str) -> dict[str, Any]:
        return self._new_thread(self._existing(channel_id), self.new_id(), call.json or {})

    def _modify_channel(self, call: RestCall, channel_id: str) -> dict[str, Any]:
        channel = self._existing(channel_id)
        body = call.json or {}
        meta = channel.get("thread_metadata")
        if meta is not None:
            for key in ("archived", "locked"):
                if key in body:
                    meta[key] = bool(body[key])
            self._later(self.dispatch("THREAD_UPDATE", self._public(channel), channel["guild_id"]))
        if "name" in body:
            channel["name"] = body["name"]
        return self._public(channel)

    def _interaction(self, iid_or_app: str, token: str) -> Interaction:
        for record in self.interactions.values():
            if record.token == token:
                return record
        raise _ApiError(404, 10015, "Unknown Webhook")

    def _callback(self, call: RestCall, iid: str, token: str) -> dict[str, Any]:
        record = self._interaction(iid, token)
        if record.callbacks:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = call.json or {}
        record.callbacks.append({**body, "_files": call.files})
        kind = body.get("type")
        inner = body.get("data") or {}
        response: dict[str, Any] = {"id": iid, "type": record.payload["type"],
                                    "response_message_loading": kind == 5,
                                    "response_message_ephemeral": bool(int(inner.get("flags") or 0) & EPHEMERAL)}
        channel_id = record.payload["channel_id"]
        if kind in (4, 5):
            content = inner if kind == 4 else {"content": "", "flags": inner.get("flags")}
            message = self._interaction_message(record, channel_id, content, call.files)
            record.original = message
            response["response_message_id"] = message["id"]
            result: dict[str, Any] = {"interaction": response}
            if kind == 4:
                result["resource"] = {"type": 4, "message": self._public(message)}
            return result
        if kind == 7:  # update the message the component was on
            target = record.payload.get("message") or {}
            stored = self.messages.get(target.get("id", ""))
            if stored is not None:
                for key in ("content", "embeds", "components"):
                    if key in inner:
                        stored[key] = inner[key] if inner[key] is not None else ([] if key != "content" else "")
            record.original = stored
            response["response_message_id"] = target.get("id")
            return {"interaction": response, "resource": {"type": 7, "message": self._public(stored or target)}}
        return {"interaction": response}

    def _interaction_message(self, record: Interaction, channel_id: str, body: dict[str, Any],
                             files: list[tuple[str, bytes]]) -> dict[str, Any]:
        meta = {"id": record.id, "type": record.payload["type"], "user": (record.payload.get("member") or {}).get(
            "user") or record.payload.get("user"), "authorizing_integration_owners": {}}
        message = self._store_bot_message(channel_id, body, files, type=20, interaction_metadata=meta,
                                          application_id=self.app_id, webhook_id=self.app_id)
        if not message["flags"] & EPHEMERAL:
            self._later(self.dispatch("MESSAGE_CREATE", self._public(message), message.get("guild_id")))
        return message

    def _get_original(self, call: RestCall, app_id: str, token: str) -> dict[str, Any]:
        record = self._interaction(app_id, token)
        if record.original is None:
            raise _ApiError(404, 10008, "Unknown Message")
        return self._public(record.original)

    def _edit_original(self, call: RestCall, app_id: str, token: str) -> dict[str, Any]:
        record = self._interaction(app_id, token)
        if record.original is None:
            raise _ApiError(404, 10008, "Unknown Message")
        body = call.json or {}
        self._check_content(body)
        for key in ("content", "embeds", "components"):
            if key in body:
                record.original[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        record.original["_files"] = record.original.get("_files", []) + call.files
        return self._public(record.original)

    def _followup(self, call: RestCall, app_id: str, token: str) -> dict[str, Any]:
        record = self._interaction(app_id, token)
        message = self._interaction_message(record, record.payload["channel_id"], call.json or {}, call.files)
        record.followups.append(message)
        return self._public(message)

    def _edit_followup(self, call: RestCall, app_id: str, token: str, message_id: str) -> dict[str, Any]:
        self._interaction(app_id, token)
        data = self.messages.get(message_id)
        if data is None:
            raise _ApiError(404, 10008, "Unknown Message")
        self._check_content(call.json or {})
        data.update({k: v for k, v in (call.json or {}).items() if k in ("content", "embeds", "components")})
        return self._public(data)

    def _later(self, coro: Any) -> None:
        """Gateway events caused by a REST call go out after the response, as on Discord."""
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- waiting and asserting -----------------------------------------------------------------

    def find(self, method: str, path_regex: str, *, status: int | None = None) -> list[RestCall]:
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)
                and (status is None or c.status == status)]

    async def wait_for(self, method: str, path_regex: str, *, count: int = 1, timeout: float = 5.0,
                       where: Callable[[RestCall], bool] | None = None) -> list[RestCall]:
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.find(method, path_regex) if where is None or where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count}x {method} {path_regex}; calls: {self.calls}")
            await asyncio.sleep(0.01)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls: {self.calls}")
            await asyncio.sleep(0.01)

    async def settle(self, quiet: float = 0.25, timeout: float = 5.0) -> None:
        """Wait until the bot made no REST call for ``quiet`` seconds (and, where the harness says, has no
        work in hand: a loaded machine can keep a turn quiet for longer than ``quiet``)."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            last = max(start, self.calls[-1].at if self.calls else 0.0)
            if self.busy is not None and self.busy():
                start = time.monotonic()
            elif time.monotonic() - last >= quiet:
                return
            await asyncio.sleep(quiet / 5)
        raise AssertionError("the bot kept calling the API")


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        """Discord's JSON error body: ``{"code": 10008, "message": "Unknown Message"}`` (plus ``errors``
        for a form error)."""
        return {"code": self.code, "message": self.message, **({"errors": self.errors} if self.errors else {})}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py reads JSON only when the content type is exactly application/json (no charset).
    return web.Response(body=json.dumps(body).encode(), status=status, headers={
        "Content-Type": "application/json", **(headers or {})})
