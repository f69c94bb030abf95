"""Real ``threadguard slack --http PORT`` worker processes for the fault tests.

Each worker is ``python -m adapters slack --http PORT`` started from the repository root with its own
environment (Redis URL, the Slack and Messages API stand-ins' URLs, short leases), its log in a file.
``kill()`` sends SIGKILL, ``terminate()`` SIGTERM; both wait for the process and are safe to repeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.redis_servers import free_port
from tests.support.shared_threads import LABEL
from tests.support.slack_standin import BOT_TOKEN

ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "worker-signing-secret"


def sign(body: str, timestamp: int) -> str:
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


class Worker:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.env = env
        self.logdir = Path(tempfile.mkdtemp(prefix=f"tg-worker-{name}-"))
        self.logfile = self.logdir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self) -> Worker:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "adapters", "slack", "--http", str(self.port)],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                await _sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log()}")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self, timeout: float = 60.0) -> int | None:
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: signal.Signals, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        if os.environ.get("TG_KEEP_WORKER_LOGS"):
            return
        with contextlib.suppress(OSError):
            for f in self.logdir.iterdir():
                f.unlink()
            self.logdir.rmdir()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def worker_env(redis_url: str, slack_api: str, anthropic_url: str, *, cluster: bool = False,
               **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url, "REDIS_CLUSTER": "true" if cluster else "false",
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_BASE_URL": slack_api,
        "SLACK_STREAM_EDIT_INTERVAL": "0.2", "SLACK_RETRY_INTERVAL": "0.05",
        # posts unpaced: these stand-ins do not enforce Slack's limits (the load bench runs with them)
        "SLACK_CHANNEL_POSTS_PER_MINUTE": "60000", "SLACK_CHANNEL_POST_BURST": "1000",
        "SLACK_POSTS_PER_MINUTE": "60000", "SLACK_POST_BURST": "1000",
        "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": anthropic_url, "ANTHROPIC_MAX_RETRIES": "0",
        "ANTHROPIC_TIMEOUT": "30",
        "THREADGUARD_LOCK_TTL_SECONDS": "2", "THREADGUARD_RECOVERY_INTERVAL": "0.3",
        "THREADGUARD_MAINTENANCE_INTERVAL": "1", "THREADGUARD_NOTICE_INTERVAL": "0.5",
        "THREADGUARD_SHUTDOWN_GRACE": "15",
        "THREADGUARD_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


async def post_event(session: aiohttp.ClientSession, url: str, payload: dict[str, Any], *,
                     retry_num: int | None = None) -> int:
    body = json.dumps(payload)
    ts = int(time.time())
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(ts),
               "X-Slack-Signature": sign(body, ts)}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    async with session.post(url, data=body.encode(), headers=headers) as resp:
        await resp.read()
        return resp.status


def _text_of(content: Any) -> str | None:
    """The member's words: a message's first text block (in a shared thread, inside its speaker label)."""
    if isinstance(content, str):
        return content
    for block in content:
        if block.get("type") == "text":
            return words_of(str(block["text"]))
    return None


def words_of(text: str) -> str:
    """A member line's words: the text inside its speaker label in a shared thread, else the text itself."""
    labelled = LABEL.fullmatch(text)
    return labelled[3].replace("&lt;", "<") if labelled else text


def newest_user_text(body: dict[str, Any]) -> str:
    """The member text a Messages API request answers: the first text block of its last user message."""
    return _text_of(body["messages"][-1]["content"]) or ""


def member_text(body: dict[str, Any]) -> str:
    """The member text a request answers, through tool rounds: the last user message that has text."""
    for message in reversed(body["messages"]):
        if message["role"] == "user" and (said := _text_of(message["content"])) is not None:
            return said
    return ""


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy value, polled every 20 ms; fails the test after ``timeout`` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
