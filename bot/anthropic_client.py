"""``ModelClient`` backed by Claude through the official ``anthropic`` SDK.

The only module that imports ``anthropic``. Streams text to the caller, marks the stable prefix
(system, tools, earlier history) for prompt caching, leaves retries with back-off to the SDK
(``max_retries``, honouring ``retry-after``) and turns SDK errors into ``bot.errors``; a 429 that outlasts
the retries carries the wait the API asked for (``bot.backoff`` shares it across workers).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from datetime import datetime
from typing import Any

import anthropic

from bot.errors import ModelError, ModelOverloaded, ModelRateLimited, ModelRequestRejected
from bot.model import (
    TOOLS,
    Block,
    FileBlock,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextBlock,
    ToolUseBlock,
    Usage,
)
from bot.policy import ToolCall
from bot.types import TextSink

log = logging.getLogger(__name__)

#: Prompt cache lifetimes the API offers, in seconds.
CACHE_TTL_SECONDS = {"5m": 300, "1h": 3600}


def cache_marker(ttl: str) -> dict[str, str]:
    """The ``cache_control`` value; the 5-minute cache is the API's default and needs no ``ttl``."""
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _file_param(block: FileBlock) -> dict[str, Any]:
    if block.kind == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": block.media_type, "data": block.data}}
    source_type = "text" if block.kind == "text" else "base64"
    return {"type": "document", "source": {"type": source_type, "media_type": block.media_type, "data": block.data},
            "title": block.title}


def _block_param(block: Block) -> dict[str, Any]:
    if isinstance(block, FileBlock):
        return _file_param(block)
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.call.id, "name": block.call.name, "input": block.call.input}
    return {"type": "tool_result", "tool_use_id": block.tool_use_id, "content": block.content,
            "is_error": block.is_error}


def _message_param(message: ModelMessage, cache: dict[str, str] | None) -> dict[str, Any]:
    content = [_block_param(b) for b in message.blocks]
    if message.system_note:
        content.append({"type": "text", "text": message.system_note})
    if not content:
        content = [{"type": "text", "text": "(empty)"}]
    if cache:
        content[-1] = {**content[-1], "cache_control": cache}
    return {"role": message.role, "content": content}


def history_breakpoint(request: ModelRequest, cache_ttl: str = "5m") -> int:
    """Index of the message that ends the cached history prefix, or -1 for none.

    A thread that was quiet for longer than the cache lifetime gets no history breakpoint: its last write
    has expired, and at that pace the write this request would pay for (1.25x, or 2x for the hour) would
    expire unread too. System and tools keep theirs: they are the same for every thread, so they stay warm.
    """
    if request.cache_until < 0:
        return -1
    if request.idle_seconds is not None and request.idle_seconds >= CACHE_TTL_SECONDS[cache_ttl]:
        return -1
    return request.cache_until


def build_params(request: ModelRequest, model: str, max_tokens: int, cache_ttl: str = "5m") -> dict[str, Any]:
    """The Messages API parameters for a request (pure; exposed for tests). At most three breakpoints:
    tools, system, and the end of the earlier history."""
    marker = cache_marker(cache_ttl)
    tools = [dict(t) for t in TOOLS]
    tools[-1] = {**tools[-1], "cache_control": marker}
    cached = history_breakpoint(request, cache_ttl)
    return {
        "model": request.model or model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": request.system, "cache_control": marker}],
        "tools": tools,
        "messages": [
            _message_param(m, cache=marker if i == cached else None) for i, m in enumerate(request.messages)
        ],
    }


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds a 429 asks us to wait: ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date), else the
    latest ``anthropic-ratelimit-*-reset`` (RFC 3339) of a limit with nothing remaining."""
    now = time.time() if now is None else now
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    resets = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") not in ("0", 0):
            continue
        with contextlib.suppress(TypeError, ValueError):
            reset = datetime.fromisoformat(str(headers.get(f"anthropic-ratelimit-{kind}-reset")))
            resets.append(reset.timestamp() - now)
    return max(0.0, max(resets)) if resets else None


def _translate_error(exc: anthropic.AnthropicError) -> ModelError:
    if isinstance(exc, anthropic.RateLimitError):
        return ModelRateLimited("model API rate limited after retries", retry_after(exc.response.headers))
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status >= 500 or status in (408, 409):
            return ModelOverloaded(f"model API unavailable (HTTP {status})")
        if status == 200:  # an error event in the middle of a stream
            return ModelOverloaded("model API stream failed")
        return ModelRequestRejected(f"model API rejected the request (HTTP {status})")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelOverloaded("model API unreachable")
    return ModelError(f"model API error ({type(exc).__name__})")


class AnthropicModelClient:
    """Claude through the Messages API."""

    offline = False

    def __init__(self, *, api_key: str, model: str, max_tokens: int = 1024, base_url: str | None = None,
                 timeout: float = 60.0, max_retries: int = 2, client: anthropic.AsyncAnthropic | None = None,
                 cache_ttl: str = "5m") -> None:
        if cache_ttl not in CACHE_TTL_SECONDS:
            raise ValueError(f"cache_ttl must be one of {', '.join(CACHE_TTL_SECONDS)}")
        self.model = model
        self.max_tokens = max_tokens
        self.cache_ttl = cache_ttl
        self.label = model
        self._client = client or anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        params = build_params(request, self.model, self.max_tokens, self.cache_ttl)
        started = time.perf_counter()
        first: float | None = None
        try:
            async with self._client.messages.stream(**params) as stream:
                async for event in stream:
                    if first is None and event.type in ("content_block_start", "text", "input_json"):
                        first = time.perf_counter() - started
                    if event.type == "text" and sink is not None and event.text:
                        await sink(event.text)
                message = await stream.get_final_message()
        except anthropic.AnthropicError as exc:
            err = _translate_error(exc)
            log.warning("model call failed: %s", err)
            raise err from exc
        response = self._response(message)
        response.first_token_seconds = first
        return response

    @staticmethod
    def _response(message: Any) -> ModelResponse:
        blocks: list[TextBlock | ToolUseBlock] = []
        for block in message.content:
            if block.type == "text":
                blocks.append(TextBlock(block.text))
            elif block.type == "tool_use":
                data = block.input if isinstance(block.input, dict) else {}
                blocks.append(ToolUseBlock(ToolCall(block.id, block.name, data)))
        usage = message.usage
        return ModelResponse(
            blocks=blocks,
            stop_reason=message.stop_reason or "end_turn",
            usage=Usage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                calls=1,
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()
