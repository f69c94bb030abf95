"""A local stand-in for Slack: the Web API methods threadguard calls, file uploads, ``response_url``
webhooks, a Socket Mode websocket (``apps.connections.open`` -> ws URL, ``hello``, envelopes, acks), and
the OAuth v2 install flow for many workspaces (``/oauth/v2/authorize`` -> redirect with a code,
``oauth.v2.access`` with the code or, with token rotation on, ``grant_type=refresh_token``).

Tokens are per workspace: a call with a token that was revoked (uninstall), expired or never issued is
refused (``token_revoked``, ``token_expired``, ``invalid_auth``), and one that names a channel of another
workspace gets ``channel_not_found``, as Slack answers.

It records every call (method and merged arguments) so tests can assert what the real slack-sdk client
sent. Failures are scripted per method: ``fail("chat.postMessage", status=429, retry_after=0)``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.slack_rate_limits import SlackRateLimits

BOT_TOKEN = "xoxb-standin-token"
APP_TOKEN = "xapp-standin-token"
CLIENT_ID = "1000.2000"
CLIENT_SECRET = "standin-client-secret"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int = 200
    #: Slack's error code when the stand-in answered ``ok: false`` (scripted, or ``message_not_found``).
    error: str | None = None
    #: ``time.monotonic()`` when the call arrived.
    at: float = field(default_factory=time.monotonic)
    #: The bearer token it carried, and the workspace that token belongs to (None: no valid token).
    token: str = ""
    team: str | None = None


@dataclass
class Workspace:
    """A workspace that can install the app: its ids, and the channels that exist in it."""

    team_id: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None
    #: An org-wide installation (Enterprise Grid): the tokens serve every workspace of the org.
    org_wide: bool = False
    channels: set[str] = field(default_factory=set)
    installs: int = 0


@dataclass
class Grant:
    """A token the stand-in issued."""

    workspace: Workspace
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int | None


@dataclass
class SlackStandin:
    team_id: str = "T0TEAM"
    bot_user_id: str = "UBOT"
    bot_id: str = "B0BOT"
    workspace_url: str = "https://example.slack.com/"
    calls: list[Call] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    #: Channels that no longer exist: every call naming them answers ``channel_not_found``.
    deleted_channels: set[str] = field(default_factory=set)
    #: Methods answered ``missing_scope`` (the app was installed without that permission).
    missing_scope: set[str] = field(default_factory=set)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The bot's messages that exist, by ts: ``chat.update``/``chat.delete`` of any other ts answer
    #: ``message_not_found``, as Slack does.
    bot_messages: dict[str, str] = field(default_factory=dict)
    #: Channels whose ``chat.startStream`` is refused, with the error Slack answers (a test of the fallback).
    stream_refusals: dict[str, str] = field(default_factory=dict)
    #: The bot's messages still streaming (``chat.startStream`` done, ``chat.stopStream`` not yet).
    open_streams: set[str] = field(default_factory=set)
    #: Seconds Slack takes to answer a call (method, arguments), before it is recorded and shown.
    delay_for: Callable[[str, dict[str, Any]], float] | None = None
    #: OAuth: tokens expire ``token_lifetime`` seconds after they are issued and come with a refresh token.
    token_rotation: bool = False
    token_lifetime: int = 43_200
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    #: ``grant_type=refresh_token`` exchanges that succeeded, per team.
    refreshes: dict[str, int] = field(default_factory=dict)
    #: Sign in with Slack, when a test installs it (``tests.support.slack_oidc.install``).
    oidc: Any = None
    #: Slack's documented rate limits, enforced when set (429 past a tier; ``tests.support.slack_rate_limits``).
    rate_limits: SlackRateLimits | None = None

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._codes: dict[str, tuple[Workspace, str]] = {}
        self._approved: tuple[Workspace, str] | None = None
        self._changed = asyncio.Condition()
        self.port = 0
        #: Members' files by id, served only with a valid bot token; every download tried, with its token.
        self.files: dict[str, bytes] = {}
        self.file_downloads: list[tuple[str, str]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> SlackStandin:
        app = web.Application()
        app.add_routes([
            web.route("*", "/api/{method}", self._api),
            web.post("/upload/{file_id}", self._upload),
            web.post("/respond/{rid}", self._respond),
            web.get("/socket", self._socket),
            web.get("/oauth/v2/authorize", self._authorize),
            web.get("/openid/connect/authorize", self._openid_authorize),
            web.get("/files-pri/{file_id}/download/{name}", self._file),
        ])
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def add_file(self, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        """A file a member shared: the file object Slack puts in the message event's ``files``."""
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = data
        url = f"{self.base_url.removesuffix('/api/')}/files-pri/{self.team_id}-{file_id}/download/{name}"
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(data),
                "mode": "hosted", "url_private": url, "url_private_download": url,
                "permalink": f"https://example.slack.com/files/UALICE/{file_id}/{name}"}

    async def _file(self, request: web.Request) -> web.Response:
        """``url_private_download``: the bytes for a bearer token of the file's workspace, else a 403 page."""
        file_id = request.match_info["file_id"].split("-", 1)[-1]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        self.file_downloads.append((file_id, token))
        team, error = self._token_team(token, "files.download")
        if error or team != self.team_id or file_id not in self.files:
            return web.Response(status=403, text="<html>sign in</html>", content_type="text/html")
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, rid: str = "r") -> str:
        return f"http://127.0.0.1:{self.port}/respond/{rid}"

    @property
    def authorization_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/v2/authorize"

    # --- workspaces and the install flow ------------------------------------------------------

    def add_workspace(self, team_id: str, *, channels: tuple[str, ...] = (), enterprise_id: str | None = None,
                      org_wide: bool = False) -> Workspace:
        n = len(self.workspaces) + 1
        workspace = Workspace(team_id, f"UBOT{n}", f"B0BOT{n}", enterprise_id, org_wide, set(channels))
        self.workspaces[team_id] = workspace
        return workspace

    def approve(self, team_id: str, user_id: str) -> None:
        """The next visit to the authorization page is ``user_id`` of ``team_id`` pressing Allow."""
        self._approved = (self.workspaces[team_id], user_id)

    def revoke(self, team_id: str) -> list[str]:
        """The workspace uninstalls the app: its tokens stop working. Returns them."""
        gone = [t for t, g in self.tokens.items() if g.workspace.team_id == team_id]
        for grant in [*self.tokens.values(), *self.refresh_tokens.values()]:
            if grant.workspace.team_id == team_id:
                grant.revoked = True
        return gone

    def expire(self, token: str, in_seconds: float = 0.0) -> None:
        self.tokens[token].expires_at = time.time() + in_seconds

    def tokens_of(self, team_id: str) -> list[str]:
        return [t for t, g in self.tokens.items() if g.workspace.team_id == team_id]

    async def _authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != CLIENT_ID or self._approved is None:
            return web.Response(status=400, text="invalid_client_id or nobody to approve")
        workspace, user = self._approved
        self._approved = None
        code = f"code-{next(self._ids)}-{time.monotonic_ns()}"
        self._codes[code] = (workspace, user)
        target = query.get("redirect_uri") or "http://127.0.0.1/slack/oauth_redirect"
        sep = "&" if "?" in target else "?"
        raise web.HTTPFound(f"{target}{sep}code={code}&state={query.get('state', '')}")

    async def _openid_authorize(self, request: web.Request) -> web.Response:
        if self.oidc is None:
            return web.Response(status=404)
        return await self.oidc.authorize(request)  # type: ignore[no-any-return]

    def _m_oauth_v2_access(self, args: dict[str, Any], basic: tuple[str, str] | None) -> dict[str, Any]:
        client = basic or (str(args.get("client_id")), str(args.get("client_secret")))
        if client != (CLIENT_ID, CLIENT_SECRET):
            return {"ok": False, "error": "invalid_client"}
        if args.get("grant_type") == "refresh_token":
            old = self.refresh_tokens.pop(str(args.get("refresh_token")), None)
            if old is None or old.revoked:
                return {"ok": False, "error": "invalid_refresh_token"}
            team = old.workspace.team_id
            self.refreshes[team] = self.refreshes.get(team, 0) + 1
            return {"ok": True, **self._issue(old.workspace)}
        found = self._codes.pop(str(args.get("code")), None)
        if found is None:
            return {"ok": False, "error": "invalid_code"}
        workspace, user = found
        workspace.installs += 1
        team = None if workspace.org_wide else {"id": workspace.team_id, "name": f"Team {workspace.team_id}"}
        enterprise = {"id": workspace.enterprise_id, "name": "Org"} if workspace.enterprise_id else None
        return {"ok": True, "app_id": "A0APP", "authed_user": {"id": user}, "bot_user_id": workspace.bot_user_id,
                "team": team, "enterprise": enterprise, "is_enterprise_install": workspace.org_wide,
                **self._issue(workspace)}

    def _issue(self, workspace: Workspace) -> dict[str, Any]:
        n = next(self._ids)
        token = f"xoxb-{workspace.team_id}-{n}-{time.monotonic_ns()}"
        out: dict[str, Any] = {"access_token": token, "token_type": "bot", "scope": "chat:write,commands"}
        grant = Grant(workspace)
        if self.token_rotation:
            grant.expires_at = time.time() + self.token_lifetime
            refresh = f"xoxe-1-{workspace.team_id}-{n}-{time.monotonic_ns()}"
            self.refresh_tokens[refresh] = Grant(workspace)
            out.update(refresh_token=refresh, expires_in=self.token_lifetime)
        self.tokens[token] = grant
        return out

    def _token_team(self, token: str | None, method: str) -> tuple[str | None, str | None]:
        """(team, None) for a valid token, (None, error) otherwise."""
        if method == "apps.connections.open":
            return (self.team_id, None) if token == APP_TOKEN else (None, "invalid_auth")
        if token == BOT_TOKEN:
            return self.team_id, None
        grant = self.tokens.get(token or "")
        if grant is None:
            return None, "invalid_auth"
        if grant.revoked:
            return None, "token_revoked"
        if grant.expires_at is not None and grant.expires_at <= time.time():
            return None, "token_expired"
        return grant.workspace.team_id, None

    def _foreign_channel(self, team: str, args: dict[str, Any]) -> bool:
        channel = str(args.get("channel") or args.get("channel_id") or "")
        owners = [w.team_id for w in self.workspaces.values() if channel in w.channels]
        return bool(owners) and team not in owners

    # --- scripting ----------------------------------------------------------------------------

    def fail(self, method: str, *, status: int = 500, times: int = 1, error: str = "internal_error",
             retry_after: int | None = None) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (a 200 with ``ok: false`` when 200)."""
        self._failures.setdefault(method, []).extend(_Failure(status, error, retry_after) for _ in range(times))

    def delete_message(self, ts: str) -> None:
        """A member or an admin deletes one of the bot's messages."""
        del self.bot_messages[ts]

    def calls_to(self, method: str, **match: Any) -> list[dict[str, Any]]:
        """Arguments of the successful calls to ``method`` whose arguments include ``match``."""
        return [c.args for c in self.calls if c.method == method and c.status == 200
                and all(c.args.get(k) == v for k, v in match.items())]

    def attempts(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``check()`` is truthy (re-checked after every recorded call); returns its value."""
        async def loop() -> Any:
            async with self._changed:
                while not (value := check()):
                    await self._changed.wait()
                return value
        return await asyncio.wait_for(loop(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- Web API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        token = token or str(args.get("token") or "")
        if self.delay_for is not None and (wait := self.delay_for(method, args)) > 0:
            await asyncio.sleep(wait)
        failure = self._next_failure(method)
        status = failure.status if failure and failure.status != 200 else 200
        call = Call(method, args, status, failure.error if failure else None, token=token)
        self.calls.append(call)
        await self._notify()
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
        if self.oidc is not None and method in self.oidc.METHODS:
            answer = self.oidc.handle(method, args, token, _basic(authorization))
            call.error = answer.get("error")
            return web.json_response(answer)
        if method == "oauth.v2.access":
            answer = self._m_oauth_v2_access(args, _basic(authorization))
            call.error = answer.get("error")
            return web.json_response(answer)
        team, refused = self._token_team(token, method)
        call.team = team
        if refused is not None or team is None:
            call.error = refused
            return _error(refused or "invalid_auth")
        if self._foreign_channel(team, args):
            call.error = "channel_not_found"
            return _error(call.error)
        if self.rate_limits is not None and (limited := self.rate_limits.refusal(method, team, args)) is not None:
            call.status, call.error = limited.status, "ratelimited"
            return limited
        if method in self.missing_scope:
            return _error("missing_scope")
        if str(args.get("channel") or args.get("channel_id") or "") in self.deleted_channels:
            return _error("channel_not_found")
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        if method == "auth.test":
            return web.json_response({"ok": True, **handler({**args, "_token": token})})
        if method in ("chat.update", "chat.delete") and str(args.get("ts")) not in self.bot_messages:
            call.error = "message_not_found"
            return _error(call.error)
        if method.startswith("chat.") and method.endswith("Stream") and (refused := self._stream_refusal(method, args)):
            call.error = refused
            return _error(refused)
        return web.json_response({"ok": True, **handler(args)})

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.pop(0) if queue else None

    def _new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        grant = self.tokens.get(str(args.get("_token") or ""))
        if grant is not None:
            w = grant.workspace
            return {"url": f"https://{w.team_id.lower()}.slack.com/", "team": f"Team {w.team_id}",
                    "user": "threadguard", "team_id": w.team_id, "user_id": w.bot_user_id, "bot_id": w.bot_id,
                    "enterprise_id": w.enterprise_id, "is_enterprise_install": w.org_wide}
        return {"url": self.workspace_url, "team": "Example", "user": "threadguard", "team_id": self.team_id,
                "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._new_ts()
        args["_ts"] = ts  # recorded with the call, so tests can follow later updates of this message
        self.bot_messages[ts] = str(args.get("text") or "")
        return {"channel": args.get("channel"), "ts": ts,
                "message": {"text": args.get("text"), "ts": ts, "user": self.bot_user_id, "bot_id": self.bot_id}}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        self.bot_messages[str(args.get("ts"))] = str(args.get("text") or "")
        return {"channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}

    def _stream_refusal(self, method: str, args: dict[str, Any]) -> str | None:
        """Slack's refusals of the streaming methods: a channel that does not take streams, a channel stream
        with nobody to address it to, text past 12,000 characters, a stream that is not open."""
        if len(str(args.get("markdown_text") or "")) > 12_000:
            return "msg_too_long"
        channel = str(args.get("channel") or "")
        if method == "chat.startStream":
            if channel in self.stream_refusals:
                return self.stream_refusals[channel]
            if not channel.startswith("D") and not (args.get("recipient_user_id") and args.get("recipient_team_id")):
                return "invalid_arguments"
            return None
        ts = str(args.get("ts") or "")
        if ts not in self.bot_messages:
            return "message_not_found"
        return None if ts in self.open_streams else "message_not_in_streaming_state"

    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._new_ts()
        args["_ts"] = ts
        self.bot_messages[ts] = str(args.get("markdown_text") or "")
        self.open_streams.add(ts)
        return {"channel": args.get("channel"), "ts": ts}

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = str(args.get("ts"))
        self.bot_messages[ts] = self.bot_messages[ts] + str(args.get("markdown_text") or "")
        return {"channel": args.get("channel"), "ts": ts}

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = str(args.get("ts"))
        self.bot_messages[ts] = self.bot_messages[ts] + str(args.get("markdown_text") or "")
        self.open_streams.discard(ts)
        return {"channel": args.get("channel"), "ts": ts, "message": {"text": self.bot_messages[ts], "ts": ts}}

    def _m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        del self.bot_messages[str(args.get("ts"))]
        return {"channel": args.get("channel"), "ts": args.get("ts")}

    def _m_chat_postEphemeral(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._new_ts()}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else dict(view or {})
        return {"view": {**view, "id": f"V{next(self._ids):06d}"}}

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"users": self.usergroups.get(str(args.get("usergroup")), [])}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):06d}"
        return {"upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(args.get("files") or "[]")
        return {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    def _m_apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        await self._notify()
        return web.Response(text="OK - uploaded")

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append({"rid": request.match_info["rid"], **await request.json()})
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode --------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                            "connection_info": {"app_id": "A0APP"}})
        self._connected.set()
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
                    await self._notify()
        self._sockets.remove(ws)
        return ws

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def push(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0,
                   retry_reason: str = "") -> str:
        """Send one envelope (``events_api``, ``slash_commands``, ``interactive``); returns its id."""
        envelope_id = f"env-{next(self._ids)}-{time.monotonic_ns()}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accept_response_payload": kind != "events_api",
                    "retry_attempt": retry_attempt, "retry_reason": retry_reason}
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 3.0) -> dict[str, Any]:
        return dict(await self.wait_for(lambda: self.acks.get(envelope_id), timeout))


def _basic(authorization: str) -> tuple[str, str] | None:
    if not authorization.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return user, password


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


async def _arguments(request: web.Request) -> dict[str, Any]:
    """Query string, form fields and JSON body, merged (the SDK uses all three)."""
    args: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args
