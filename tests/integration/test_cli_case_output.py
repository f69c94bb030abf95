"""The moderators' CLI prints what members and the model wrote as text a terminal shows, never acts on:
escape sequences (colours, window titles, cursor moves), a carriage return that would overwrite a line,
and line separators that would split a JSON line all come out as visible escapes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio
from click.testing import CliRunner

from adapters.cli import main as threadguard
from bot.store.redis_store import build_store
from bot.types import Case, Entry, EntryKind, Participant
from config.settings import StoreSettings

HOSTILE = "ok\x1b]0;pwned\x07 \x1b[2J\x9b31m red\rHIDDEN\x7f\u2028next\u2029end"
RAW = ("\x1b", "\x07", "\x9b", "\r", "\x7f", "\u2028", "\u2029")


def _cli(url: str, *args: str) -> Any:
    env = {"REDIS_URL": url, "ANTHROPIC_API_KEY": "", "THREADGUARD_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(threadguard, list(args), env=env, catch_exceptions=False)


async def test_case_texts_reach_the_terminal_inert(redis_client: redis.asyncio.Redis, redis_server: Any):
    store = build_store(redis_client, StoreSettings())
    case = Case(0, "g", "discord", "discord:g:c:t", "c", reason="persistent_abuse", category="hate" + HOSTILE,
                summary=HOSTILE, note=HOSTILE, ended_at="2026-12-01T10:00:00+00:00", ended_by="model",
                participants=[Participant("u1", "name" + HOSTILE)],
                transcript=[Entry(EntryKind.USER, HOSTILE, author_id="u1", author_name="name" + HOSTILE)],
                case_ref="cli:1")
    filed = await store.cases.file_action(case)
    for args in (("cases", "show", str(filed.case_id)), ("cases", "list"),
                 ("cases", "show", str(filed.case_id), "--json"), ("cases", "list", "--json")):
        run = await asyncio.to_thread(_cli, redis_server.url, *args)
        assert run.exit_code == 0, run.output
        leaked = [ch for ch in RAW if ch in run.output]
        assert leaked == [], (args, leaked)
    shown = await asyncio.to_thread(_cli, redis_server.url, "cases", "show", str(filed.case_id))
    assert "\\u001b]0;pwned\\u0007" in shown.output and "red\\u000dHIDDEN" in shown.output
    # JSON output stays JSON with the text as it was written
    listed = await asyncio.to_thread(_cli, redis_server.url, "cases", "list", "--json")
    lines = listed.output.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["summary"] == HOSTILE
    one = await asyncio.to_thread(_cli, redis_server.url, "cases", "show", str(filed.case_id), "--json")
    assert json.loads(one.output)["transcript"][0]["text"] == HOSTILE
