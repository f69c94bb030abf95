"""Running one command against a freshly built runtime: shared by every CLI command."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from bot.bootstrap import Runtime, build_runtime
from bot.errors import ThreadguardError
from bot.metrics import Metrics
from config.settings import Settings

T = TypeVar("T")


def setup_logging(settings: Settings, quiet: bool = False) -> None:
    level = getattr(logging, settings.engine.log_level.upper(), logging.INFO)
    if quiet:
        level = max(level, logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_with_runtime(fn: Callable[[Runtime], Awaitable[T]], *, quiet: bool = True,
                     metrics: Metrics | None = None) -> T:
    """Build the runtime (counting into ``metrics``), run ``fn`` with it, close it; users see messages, never
    tracebacks."""
    try:
        settings = Settings()
        setup_logging(settings, quiet)
        runtime = build_runtime(settings, metrics=metrics)
    except ThreadguardError as exc:
        raise click.ClickException(exc.user_message + f" ({exc})") from exc

    async def main() -> T:
        try:
            return await fn(runtime)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    except ThreadguardError as exc:
        raise click.ClickException(exc.user_message) from exc
    except KeyboardInterrupt:
        raise SystemExit(130) from None
