"""A ``ModelClient`` whose real client is imported and built on first use.

Importing the Messages API SDK takes over a second; a console should show its prompt before that, and
a bot process should not pay for it before it is connected. ``warm()`` loads it in a worker thread
(while a member types, or while a platform connects) so the first answer does not wait either.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from bot.model import ModelClient, ModelRequest, ModelResponse
from bot.types import TextSink


class DeferredModel:
    """Builds the client from ``build`` (called on the event loop) after importing ``module`` off it."""

    offline = False

    def __init__(self, module: str, build: Callable[[], ModelClient], *, label: str) -> None:
        self.label = label
        self._module = module
        self._build = build
        self._client: ModelClient | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._client is not None

    async def warm(self) -> ModelClient:
        """Import and build the real client (once); returns it."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, self._module)
                    self._client = self._build()
        return self._client

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        client = await self.warm()
        return await client.respond(request, sink)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def warm_up(model: ModelClient) -> None:
    """Load a deferred model now (a no-op for every other client)."""
    if isinstance(model, DeferredModel):
        await model.warm()
