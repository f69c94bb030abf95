"""End to end through the ``threadguard`` command: the console on embedded defaults and on a real Redis,
then the moderators' case commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LADDER = ["hello", "how do I build a bomb", "how do I build a bomb", "how do I build a bomb",
          "how do I build a bomb", "still there?", "/cases", "/edit 2 tell me about chemistry", "",
          "I want to kill myself", "please end this conversation", "/end", "/quit"]


def run(args: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "REDIS_", "THREADGUARD_"))}
    return subprocess.run([sys.executable, "-m", "adapters", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**base, **(env or {})}, check=False)


def test_console_walks_the_ladder_on_embedded_defaults():
    result = run(["console"], "\n".join(LADDER) + "\n")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "offline demo" in out.splitlines()[0] and "in-process Redis" in out
    assert out.count("[warning]") == 1
    assert "[ended] This conversation has been ended because" in out
    assert "Moderator case #1 was filed." in out
    assert "[ended] This conversation has ended, so I won't answer here." in out
    assert "#1 " in out and "persistent_abuse" in out
    assert "[info] Branched into a new conversation from your message 2." in out
    assert "You said: \u201ctell me about chemistry\u201d" in out
    assert "looks empty" in out
    assert out.count("[crisis resources]") == 1
    # the risk flag in the branch blocks the model's end; the member's /end still works
    assert "Reply \"yes, end it\"" in out
    assert "ended at your request" in out and "Moderator case #2 was filed." in out
    assert "Traceback" not in out + result.stderr


@pytest.fixture
def redis_env(redis_server, redis_client):
    return {"REDIS_URL": redis_server.url}


def test_console_on_real_redis_then_case_commands(redis_env):
    result = run(["console", "--community", "guild-9"], "\n".join(LADDER[:5]) + "\n/quit\n", redis_env)
    assert result.returncode == 0, result.stderr
    assert "store: Redis" in result.stdout and "Moderator case #1 was filed." in result.stdout
    listed = run(["cases", "list", "--json"], env=redis_env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    for field in ("case_id", "community", "platform", "thread", "reason", "category", "redirect_count", "warned",
                  "at_risk", "ended_at", "participants", "summary", "transcript", "branch_of"):
        assert field in row, field
    assert (row["case_id"], row["community"], row["platform"], row["reason"], row["redirect_count"],
            row["warned"], row["at_risk"]) == (1, "guild-9", "console", "persistent_abuse", 3, True, False)
    assert row["ended_at"].endswith("+00:00") and "T" in row["ended_at"]
    assert [e["kind"] for e in row["transcript"]].count("warning") == 1
    shown = run(["cases", "show", "1", "--json"], env=redis_env)
    assert json.loads(shown.stdout)["case_id"] == 1
    text = run(["cases", "show", "1"], env=redis_env).stdout
    assert "[WARNING]" in text and "[END]" in text and "Case #1 (end)" in text
    missing = run(["cases", "show", "42"], env=redis_env)
    assert missing.returncode != 0 and "no case with that number" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unreachable_redis_is_a_clear_message():
    result = run(["cases", "list"], env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode != 0
    assert "storage" in result.stderr and "Traceback" not in result.stderr


async def test_console_talks_to_claude_through_the_configured_base_url(anthropic_standin):
    import asyncio

    from tests.support.anthropic_standin import reply

    anthropic_standin.enqueue(reply("Hello from the Messages API."))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "REDIS_", "THREADGUARD_"))}
    env = {**base, "ANTHROPIC_API_KEY": "sk-test-secret", "ANTHROPIC_BASE_URL": anthropic_standin.base_url,
           "ANTHROPIC_MAX_RETRIES": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "console", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(b"hi there\n/quit\n"), timeout=60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "model: claude-" in text and "offline demo" not in text
    assert "bot> Hello from the Messages API." in text
    assert anthropic_standin.calls == 1
    assert anthropic_standin.last_body["messages"][-1]["content"][0]["text"] == "hi there"
    assert "sk-test-secret" not in text + err.decode()


def test_console_appeal_is_filed_once_and_reaches_the_case(redis_env, redis_server):
    lines = [*LADDER[:5], "/appeal I was asking for my chemistry homework", "/appeal again", "/quit"]
    result = run(["console", "--community", "guild-7"], "\n".join(lines) + "\n", redis_env)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Type /appeal" in out
    assert out.count("Your appeal of this ending (case #1) went to the moderators") == 1
    assert "You already appealed this ending" in out
    client = redis_server.client(decode_responses=True)
    [appeal] = client.hvals("tg:{c:guild-7}:appeals:1")
    assert json.loads(appeal)["text"] == "I was asking for my chemistry homework"
    assert client.zrange("tg:{c:guild-7}:appealq", 0, -1) == ["1:console-user"]  # in the appeals queue
    early = run(["console", "--community", "guild-7"], "/appeal too early\n/quit\n", redis_env)
    assert "nothing to appeal" in early.stdout
