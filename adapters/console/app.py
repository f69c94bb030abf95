"""``threadguard console``: the engine in a terminal (interactive, or one message per line of stdin)."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from adapters.console.session import ConsoleSession
from bot.bootstrap import Runtime
from bot.deferred_model import warm_up
from bot.errors import ThreadguardError


def banner(runtime: Runtime, community: str) -> list[str]:
    model = runtime.model.label
    model_line = f"model: {model}" + ("  -- offline demo, set ANTHROPIC_API_KEY for Claude" if runtime.model.offline
                                      else "")
    store = "in-process Redis (nothing is kept after exit)" if runtime.embedded_store else "Redis"
    return [f"threadguard console  |  {model_line}", f"store: {store}  |  community: {community}",
            "Type a message, or /help for commands."]


async def run_console(runtime: Runtime, *, community: str = "local", stdin: TextIO | None = None,
                      stdout: TextIO | None = None) -> int:
    """Chat until /quit or end of input. Returns the process exit code."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty()

    async def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    session = ConsoleSession(runtime, community=community, write=write, stream=interactive,
                             review=runtime.review)
    for line in banner(runtime, community):
        await write(line + "\n")
    await runtime.case_filing.reconcile()
    loop = asyncio.get_running_loop()
    # Load the Claude client while the member types: the prompt does not wait for the SDK import.
    warming = asyncio.create_task(warm_up(runtime.model), name="threadguard model warm-up")
    warming.add_done_callback(lambda t: t.cancelled() or t.exception())
    while not session.quit:
        if interactive:
            await write("you> ")
        raw = await loop.run_in_executor(None, stdin.readline)
        if raw == "":
            break
        line = raw.rstrip("\n")
        if not interactive:
            await write(f"you> {line}\n")
        try:
            output = await session.handle_line(line)
        except ThreadguardError as exc:
            output = [f"[error] {exc.user_message}"]
        for out in output:
            await write(out + "\n")
    return 0
