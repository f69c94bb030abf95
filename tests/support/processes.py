"""Run ``python -m adapters …`` as a real process, wait for its ops endpoint, stop it with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
#: Variables a test process must not inherit from the developer's shell.
SCRUBBED = ("REDIS_URL", "REDIS_CLUSTER", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISCORD_TOKEN",
            "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DASHBOARD_SESSION_SECRET")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("THREADGUARD_")}
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Running:
    process: asyncio.subprocess.Process
    ops_url: str
    stderr: list[str] = field(default_factory=list)

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(self.ops_url + path) as resp:
            return resp.status, await resp.text()

    async def wait_ready(self, timeout: float = 30.0, *, status: int | None = 200) -> tuple[int, str]:
        """Poll ``/readyz`` until it answers (with ``status`` when given)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.process.returncode is not None:
                raise AssertionError(f"the process exited with {self.process.returncode}: {self.log}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                got = await self.get("/readyz")
                if status is None or got[0] == status:
                    return got
            if loop.time() > deadline:
                raise AssertionError(f"/readyz did not answer {status} in {timeout} s: {self.log}")
            await asyncio.sleep(0.1)

    @property
    def log(self) -> str:
        return "".join(self.stderr)


async def run_cli(*args: str, env: Mapping[str, str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Run a command to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", *args, cwd=ROOT, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running(*args: str, env: Mapping[str, str], metrics_port: int) -> AsyncIterator[Running]:
    """Start a long-running command; on exit, SIGTERM it and wait (SIGKILL after 10 s)."""
    env = {**env, "THREADGUARD_METRICS_PORT": str(metrics_port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    run = Running(proc, f"http://127.0.0.1:{metrics_port}")

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            run.stderr.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        yield run
    finally:
        await stop(proc, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader, 5)


async def stop(proc: asyncio.subprocess.Process, sig: int, grace: float = 10.0) -> None:
    """Stop ``proc`` with ``sig``; SIGKILL it when it has not exited within ``grace`` seconds."""
    if proc.returncode is not None:
        return
    proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()
