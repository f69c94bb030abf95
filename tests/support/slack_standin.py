"""A local stand-in for Slack: the Web API methods threadguard calls, file uploads, ``response_url``
webhooks, and a Socket Mode websocket (``apps.connections.open`` -> ws URL, ``hello``, envelopes, acks).

It records every call (method and merged arguments) so tests can assert what the real slack-sdk client
sent. Failures are scripted per method: ``fail("chat.postMessage", status=429, retry_after=0)``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-standin-token"
APP_TOKEN = "xapp-standin-token"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int = 200
    #: Slack's error code when the stand-in answered ``ok: false`` (scripted, or ``message_not_found``).
    error: str | None = None
    #: ``time.monotonic()`` when the call arrived.
    at: float = field(default_factory=time.monotonic)


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
    #: Seconds Slack takes to answer a call (method, arguments), before it is recorded and shown.
    delay_for: Callable[[str, dict[str, Any]], float] | None = None

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._changed = asyncio.Condition()
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> SlackStandin:
        app = web.Application()
        app.add_routes([
            web.route("*", "/api/{method}", self._api),
            web.post("/upload/{file_id}", self._upload),
            web.post("/respond/{rid}", self._respond),
            web.get("/socket", self._socket),
        ])
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

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
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or args.get("token")
        if self.delay_for is not None and (wait := self.delay_for(method, args)) > 0:
            await asyncio.sleep(wait)
        failure = self._next_failure(method)
        status = failure.status if failure and failure.status != 200 else 200
        call = Call(method, args, status, failure.error if failure else None)
        self.calls.append(call)
        await self._notify()
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return _error("invalid_auth")
        if method in self.missing_scope:
            return _error("missing_scope")
        if str(args.get("channel") or args.get("channel_id") or "") in self.deleted_channels:
            return _error("channel_not_found")
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        if method in ("chat.update", "chat.delete") and str(args.get("ts")) not in self.bot_messages:
            call.error = "message_not_found"
            return _error(call.error)
        return web.json_response({"ok": True, **handler(args)})

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.pop(0) if queue else None

    def _new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _m_auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
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
