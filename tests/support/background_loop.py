"""An asyncio event loop running in a thread of its own, for harnesses that a synchronous test (a
Playwright browser) drives: ``call`` runs a coroutine there and waits for its result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(fn(), self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def start_loop(self) -> None:
        self._thread.start()

    def end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
