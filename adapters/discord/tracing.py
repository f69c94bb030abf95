"""Discord HTTP answers counted for metrics: every REST response of 400 or more is a platform error
(labelled by status), every 429 a rate limit (labelled by the route's first path segment). discord.py
waits out 429s itself; this only counts them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp

from bot.metrics import Metrics


def _route(url: Any) -> str:
    parts = [p for p in str(getattr(url, "path", url)).split("/") if p and not p.isdigit()]
    tail = [p for p in parts if p not in ("api", "v10", "v9")]
    return tail[0] if tail else "-"


def http_trace(metrics: Metrics) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_end(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        if status == 429:
            metrics.rate_limited("discord", _route(params.url))
        if status >= 400:
            metrics.platform_error("discord", f"http_{status}")

    trace.on_request_end.append(on_end)
    return trace
