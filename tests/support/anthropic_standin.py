"""A local stand-in for the Anthropic Messages API, for the real ``anthropic.AsyncAnthropic`` client.

    standin = AnthropicStandin(); await standin.start()
    client = anthropic.AsyncAnthropic(base_url=standin.base_url, api_key="test", max_retries=2)
    standin.enqueue(reply(text("Hello"), tool_use("record_redirection", {"category": "violence"})))
    standin.enqueue(http_error(429, "rate_limit_error", retry_after_ms=10))
    standin.responder = lambda body: reply(text("ok"))   # when the queue is empty

Serves ``POST /v1/messages`` (JSON or, with ``"stream": true``, SSE events exactly as the SDK parses
them: text in several ``text_delta`` chunks, tool input in several ``input_json_delta`` chunks) and
``POST /v1/messages/count_tokens``. Every request is recorded in ``requests`` as (body, headers), and
every successful answer in ``last_tokens`` with the moment its last token went out. A reply streams
``chunk_chars`` characters a delta, ``chunk_delay`` seconds apart (``reply(..., chunk_chars=, chunk_delay=)``).

The stand-in checks what the real API would reject with a 400 (missing fields, empty text blocks, a
``tool_use`` not answered by a ``tool_result`` in the next user message, more than 4 ``cache_control``
breakpoints; image and document blocks: bad base64, a media type the bytes do not match, an image's base64
over 5 MB or a side over 8000 px, more than 100 images, a PDF over 100 pages) and with a 413 (a request body
over 32 MB) before it takes a script off the queue. Usage simulates prompt caching: when a request
carries ``cache_control`` and its system+tools prefix equals the previous request's, the prefix is
reported as ``cache_read_input_tokens``; otherwise as ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import io
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

from aiohttp import web

MAX_CACHE_BREAKPOINTS = 4
#: The Messages API's documented limits on files and requests.
MAX_IMAGE_BASE64 = 5_242_880
MAX_IMAGE_SIDE = 8000
MAX_IMAGES = 100
MAX_PDF_PAGES = 100
MAX_REQUEST_BYTES = 32 * 1024 * 1024
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "overloaded_error": 529,
}


# --- scripts -----------------------------------------------------------------------------------------

def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, input: dict[str, Any] | None = None, *, id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or f"toolu_{secrets.token_hex(12)}", "name": name,
            "input": dict(input or {})}


@dataclass
class Reply:
    """A successful message. ``usage`` overrides the simulated numbers it names."""

    blocks: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    chunk_delay: float = 0.0  # seconds between streamed deltas
    delay: float = 0.0  # seconds before the response starts
    chunk_chars: int = 10  # characters of text per streamed delta

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(b["type"] == "tool_use" for b in self.blocks) else "end_turn"


@dataclass
class HttpError:
    status: int
    body_type: str
    message: str = "scripted error"
    retry_after_ms: int | None = None
    should_retry: bool | None = None  # sends x-should-retry when set
    #: Further response headers (``retry-after``, ``anthropic-ratelimit-*``).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamError:
    """Starts a streamed answer with ``after_text``, then sends ``event: error``."""

    after_text: str = "partial"
    type: str = "overloaded_error"
    message: str = "Overloaded"


Script = Reply | HttpError | StreamError
Responder = Callable[[dict[str, Any]], "Script | Awaitable[Script]"]


def reply(*blocks: dict[str, Any] | str, stop_reason: str | None = None, usage: dict[str, int] | None = None,
          chunk_delay: float = 0.0, delay: float = 0.0, chunk_chars: int = 10) -> Reply:
    """A reply of blocks (a plain string is a text block); streamed ``chunk_chars`` characters a delta,
    ``chunk_delay`` seconds apart, after ``delay`` seconds."""
    return Reply([text(b) if isinstance(b, str) else b for b in blocks], stop_reason, dict(usage or {}),
                 chunk_delay, delay, chunk_chars)


def http_error(status: int, body_type: str | None = None, retry_after_ms: int | None = None, *,
               message: str = "scripted error", should_retry: bool | None = None,
               headers: dict[str, str] | None = None) -> HttpError:
    inferred = next((t for t, s in ERROR_STATUS.items() if s == status), "api_error")
    return HttpError(status, body_type or inferred, message, retry_after_ms, should_retry, dict(headers or {}))


def stream_error(after_text: str = "partial", type: str = "overloaded_error",
                 message: str = "Overloaded") -> StreamError:
    return StreamError(after_text, type, message)


def _as_script(value: Script | str | dict[str, Any] | list[dict[str, Any]]) -> Script:
    if isinstance(value, Reply | HttpError | StreamError):
        return value
    if isinstance(value, str | dict):
        return reply(value)
    return reply(*value)


# --- helpers -----------------------------------------------------------------------------------------

class RecordedRequest(NamedTuple):
    body: dict[str, Any]
    headers: dict[str, str]


class LastToken(NamedTuple):
    """A successful answer's text, and when its last token was sent (``time.monotonic()``)."""

    at: float
    text: str


def rough_tokens(value: Any) -> int:
    """About four characters a token, as a stand-in for the tokenizer."""
    if value is None:
        return 0
    return max(1, math.ceil(len(json.dumps(value, sort_keys=True)) / 4))


def split_text(value: str, size: int = 10) -> list[str]:
    """Chunks of at most ``size`` characters, at least two when the text allows it."""
    if len(value) < 2:
        return [value]
    size = min(size, math.ceil(len(value) / 2))
    return [value[i:i + size] for i in range(0, len(value), size)]


def split_json(value: dict[str, Any]) -> list[str]:
    data = json.dumps(value)
    size = max(1, math.ceil(len(data) / 3))
    return [data[i:i + size] for i in range(0, len(data), size)]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _count_cache_control(value: Any) -> int:
    if isinstance(value, dict):
        return int("cache_control" in value) + sum(_count_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_cache_control(v) for v in value)
    return 0


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [text(content)]
    return [b for b in content or [] if isinstance(b, dict)]


def validate(body: dict[str, Any]) -> str | None:
    """What the real API would reject with invalid_request_error, or None."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if _count_cache_control(body) > MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided."
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if isinstance(message.get("content"), str) and not message["content"]:
            return f"messages.{i}: text content blocks must be non-empty"
        for block in _blocks(message):
            if block.get("type") == "text" and not str(block.get("text", "")).strip():
                return f"messages.{i}: text content blocks must contain non-whitespace text"
        problem = _check_tool_pairing(messages, i)
        if problem:
            return problem
        for j, block in enumerate(_blocks(message)):
            problem = _check_file(block, f"messages.{i}.content.{j}")
            if problem:
                return problem
    images = sum(1 for m in messages for b in _blocks(m) if b.get("type") == "image")
    if images > MAX_IMAGES:
        return f"messages: Too many images in request. Maximum number of images is {MAX_IMAGES}, got {images}."
    return None


def _decoded(data: Any) -> bytes | None:
    if not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_file(block: dict[str, Any], where: str) -> str | None:
    """An image or document block as the real API checks it."""
    kind = block.get("type")
    if kind not in ("image", "document"):
        return None
    source = block.get("source") or {}
    if kind == "document" and source.get("type") == "text":
        if source.get("media_type") != "text/plain" or not str(source.get("data") or "").strip():
            return f"{where}.document.source.text: a text document needs media_type text/plain and non-empty data"
        return None
    if source.get("type") != "base64":
        return (f"{where}.{kind}.source: Input tag '{source.get('type')}' found using 'type' does not match any "
                "of the expected tags")
    raw = _decoded(source.get("data"))
    if raw is None:
        return f"{where}.{kind}.source.base64.data: The {kind} data is not valid base64"
    if kind == "document":
        return _check_pdf(raw, source, where)
    return _check_image(raw, source, where)


def _check_image(raw: bytes, source: dict[str, Any], where: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    size = len(source["data"])
    if size > MAX_IMAGE_BASE64:
        return f"{where}.image.source.base64: image exceeds 5 MB maximum: {size} bytes > {MAX_IMAGE_BASE64} bytes"
    media_type = source.get("media_type")
    if media_type not in IMAGE_FORMATS.values():
        return (f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
                "or 'image/webp'")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError):
        return f"{where}.image.source.base64.data: Could not process image"
    if IMAGE_FORMATS.get(str(fmt)) != media_type:
        return f"{where}.image.source.base64.data: Image does not match the provided media type {media_type}"
    if max(width, height) > MAX_IMAGE_SIDE:
        return (f"{where}.image.source.base64.data: At least one of the image dimensions exceed max allowed "
                f"size: {MAX_IMAGE_SIDE} pixels")
    return None


def _check_pdf(raw: bytes, source: dict[str, Any], where: str) -> str | None:
    import pypdf

    if source.get("media_type") != "application/pdf":
        return f"{where}.document.source.base64.media_type: Input should be 'application/pdf'"
    try:
        pages = len(pypdf.PdfReader(io.BytesIO(raw)).pages)
    except Exception:
        return f"{where}.document.source.base64.data: The PDF specified was not valid."
    if pages > MAX_PDF_PAGES:
        return f"{where}.document.source.base64.data: A maximum of {MAX_PDF_PAGES} PDF pages may be provided."
    return None


def _check_tool_pairing(messages: list[dict[str, Any]], i: int) -> str | None:
    message = messages[i]
    if message["role"] == "assistant":
        ids = {b.get("id") for b in _blocks(message) if b.get("type") == "tool_use"}
        if not ids:
            return None
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = {b.get("tool_use_id") for b in _blocks(following or {}) if b.get("type") == "tool_result"}
        if following is None or not ids <= answered:
            return (f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(sorted(str(x) for x in ids - answered))}")
        return None
    results = {b.get("tool_use_id") for b in _blocks(message) if b.get("type") == "tool_result"}
    if results:
        previous = messages[i - 1] if i > 0 else {}
        asked = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"}
        if previous.get("role") != "assistant" or not results <= asked:
            return f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks"
    return None


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# --- the server ----------------------------------------------------------------------------------------

class AnthropicStandin:
    """Scripted Messages API on 127.0.0.1; ``base_url`` is valid after ``start()``."""

    def __init__(self, *, strict: bool = True, require_api_key: bool = True) -> None:
        self.strict = strict
        self.require_api_key = require_api_key
        self.responder: Responder | None = None
        self.requests: list[RecordedRequest] = []
        self.count_requests: list[RecordedRequest] = []
        self.streams_completed = 0
        #: Requests refused for their size alone (over 32 MB: not read, not recorded).
        self.oversized_requests = 0
        #: The final ``usage`` of every successful answer, as sent (the numbers a client should bill).
        self.reported_usage: list[dict[str, int]] = []
        #: Every successful answer's text and the moment its last token went out, in that order.
        self.last_tokens: list[LastToken] = []
        self._queue: deque[Script] = deque()
        self._previous_prefix: str | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # scripting
    def enqueue(self, *scripts: Script | str | dict[str, Any] | list[dict[str, Any]]) -> None:
        """FIFO; a plain string is a text reply, a list of blocks is a reply of those blocks."""
        self._queue.extend(_as_script(s) for s in scripts)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    @property
    def last_body(self) -> dict[str, Any]:
        return self.requests[-1].body

    # lifecycle
    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the stand-in is not started")
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> AnthropicStandin:
        app = web.Application(client_max_size=2 * MAX_REQUEST_BYTES)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self._runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> AnthropicStandin:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # handlers
    async def _read(self, request: web.Request) -> tuple[dict[str, Any] | None, dict[str, str]]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await request.json()
        except ValueError:
            return None, headers
        return (body if isinstance(body, dict) else None), headers

    def _auth_error(self, headers: dict[str, str]) -> web.Response | None:
        if self.require_api_key and not (headers.get("x-api-key") or headers.get("authorization")):
            return self._error(HttpError(401, "authentication_error", "x-api-key header is required"))
        return None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if self.strict and (request.content_length or 0) > MAX_REQUEST_BYTES:
            self.oversized_requests += 1
            return self._error(HttpError(413, "request_too_large",
                                         "Request exceeds the maximum allowed number of bytes."))
        body, headers = await self._read(request)
        if body is None:
            return self._error(HttpError(400, "invalid_request_error", "the body is not a JSON object"))
        self.requests.append(RecordedRequest(body, headers))
        rejected = self._auth_error(headers)
        if rejected is not None:
            return rejected
        problem = validate(body) if self.strict else None
        if problem:
            return self._error(HttpError(400, "invalid_request_error", problem))
        usage = self._usage(body)
        script = await self._next_script(body)
        if script is None:
            return self._error(HttpError(
                500, "api_error", "anthropic stand-in: nothing scripted for this request "
                "(call enqueue() or set responder)", should_retry=False))
        if isinstance(script, HttpError):
            return self._error(script)
        if not body.get("stream"):
            if isinstance(script, StreamError):
                return self._error(HttpError(ERROR_STATUS.get(script.type, 500), script.type, script.message))
            await asyncio.sleep(script.delay)
            self._answered(script)
            return web.json_response(self._message(body, script, usage), headers=self._headers())
        return await self._stream(request, body, script, usage)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body, headers = await self._read(request)
        if body is None:
            return self._error(HttpError(400, "invalid_request_error", "the body is not a JSON object"))
        self.count_requests.append(RecordedRequest(body, headers))
        rejected = self._auth_error(headers)
        if rejected is not None:
            return rejected
        total = sum(rough_tokens(body.get(k)) for k in ("system", "tools", "messages"))
        return web.json_response({"input_tokens": total}, headers=self._headers())

    async def _next_script(self, body: dict[str, Any]) -> Script | None:
        if self._queue:
            return self._queue.popleft()
        if self.responder is None:
            return None
        result = self.responder(body)
        if inspect.isawaitable(result):
            result = await result
        return _as_script(result)

    # responses
    @staticmethod
    def _headers(**extra: str) -> dict[str, str]:
        return {"request-id": _new_id("req"), **extra}

    def _error(self, error: HttpError) -> web.Response:
        extra: dict[str, str] = {}
        if error.retry_after_ms is not None:
            extra["retry-after-ms"] = str(error.retry_after_ms)
        if error.should_retry is not None:
            extra["x-should-retry"] = "true" if error.should_retry else "false"
        headers = self._headers(**extra, **error.headers)
        payload = {"type": "error", "error": {"type": error.body_type, "message": error.message},
                   "request_id": headers["request-id"]}
        return web.json_response(payload, status=error.status, headers=headers)

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Simulated usage; the system+tools prefix is cached when it repeats the previous request's."""
        prefix = json.dumps([body.get("system"), body.get("tools")], sort_keys=True)
        previous, self._previous_prefix = self._previous_prefix, prefix
        prefix_tokens = rough_tokens([body.get("system"), body.get("tools")])
        total = prefix_tokens + rough_tokens(body.get("messages"))
        if not _count_cache_control(body):
            return {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        hit = prefix == previous
        return {
            "input_tokens": total - prefix_tokens,
            "cache_creation_input_tokens": 0 if hit else prefix_tokens,
            "cache_read_input_tokens": prefix_tokens if hit else 0,
        }

    def _final_usage(self, script: Reply, usage: dict[str, int]) -> dict[str, int]:
        output = sum(rough_tokens(b.get("text") or b.get("input")) for b in script.blocks) or 1
        final = {**usage, "output_tokens": output, **script.usage}
        self.reported_usage.append(final)
        return final

    def _answered(self, script: Reply, at: float | None = None) -> None:
        said = "".join(str(b.get("text", "")) for b in script.blocks if b["type"] == "text")
        self.last_tokens.append(LastToken(time.monotonic() if at is None else at, said))

    def _message(self, body: dict[str, Any], script: Reply, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": _new_id("msg"), "type": "message", "role": "assistant", "model": body.get("model"),
            "content": script.blocks, "stop_reason": script.effective_stop_reason, "stop_sequence": None,
            "usage": self._final_usage(script, usage),
        }

    async def _stream(self, request: web.Request, body: dict[str, Any], script: Reply | StreamError,
                      usage: dict[str, int]) -> web.StreamResponse:
        if isinstance(script, Reply):
            await asyncio.sleep(script.delay)  # time to first byte
        response = web.StreamResponse(headers=self._headers(**{
            "content-type": "text/event-stream", "cache-control": "no-cache"}))
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            if isinstance(script, StreamError):
                await self._write_error_stream(response, body, script, usage)
            else:
                await self._write_stream(response, body, script, usage)
                self.streams_completed += 1
            await response.write_eof()
        return response

    async def _start_events(self, response: web.StreamResponse, body: dict[str, Any],
                            usage: dict[str, int]) -> None:
        message: dict[str, Any] = {
            "id": _new_id("msg"), "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}
        await response.write(_sse("message_start", {"type": "message_start", "message": message}))
        await response.write(_sse("ping", {"type": "ping"}))

    async def _write_stream(self, response: web.StreamResponse, body: dict[str, Any], script: Reply,
                            usage: dict[str, int]) -> None:
        await self._start_events(response, body, usage)
        last_token = time.monotonic()
        for index, block in enumerate(script.blocks):
            if block["type"] == "tool_use":
                start = {**block, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in split_json(block["input"])]
            else:
                start = {**block, "text": ""}
                deltas = [{"type": "text_delta", "text": p}
                          for p in split_text(block.get("text", ""), script.chunk_chars)]
            await response.write(_sse("content_block_start", {
                "type": "content_block_start", "index": index, "content_block": start}))
            for delta in deltas:
                if script.chunk_delay:
                    await asyncio.sleep(script.chunk_delay)
                last_token = time.monotonic()
                await response.write(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": index, "delta": delta}))
            await response.write(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        self._answered(script, last_token)
        final = self._final_usage(script, usage)
        await response.write(_sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": script.effective_stop_reason, "stop_sequence": None},
            "usage": final}))
        await response.write(_sse("message_stop", {"type": "message_stop"}))

    async def _write_error_stream(self, response: web.StreamResponse, body: dict[str, Any],
                                  script: StreamError, usage: dict[str, int]) -> None:
        await self._start_events(response, body, usage)
        if script.after_text:
            await response.write(_sse("content_block_start", {
                "type": "content_block_start", "index": 0, "content_block": text("")}))
            for part in split_text(script.after_text):
                await response.write(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}))
        await response.write(_sse("error", {
            "type": "error", "error": {"type": script.type, "message": script.message}}))
