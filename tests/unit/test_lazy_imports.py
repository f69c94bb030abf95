"""Start-up stays light: the Messages API SDK and the dashboard are imported only when used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from adapters.cli import main
from bot.bootstrap import build_runtime
from config.settings import AnthropicSettings, RedisSettings, Settings
runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key="sk-test"), redis=RedisSettings(url=None)))
heavy = ["anthropic", "adapters.dashboard.cli", "adapters.dashboard.app", "prometheus_client", "discord",
         "slack_bolt", "numpy"]
print(json.dumps({"label": runtime.model.label, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_building_the_console_runtime_with_an_api_key_imports_no_sdk_and_no_dashboard():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "REDIS_"))}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"label": "claude-sonnet-5-5", "loaded": []}


def test_the_dashboard_commands_are_still_there():
    out = subprocess.run([sys.executable, "-m", "adapters", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    for command in ("dashboard", "purge", "forget-user", "moderator", "usage"):
        assert f"  {command} " in out.stdout
    out = subprocess.run([sys.executable, "-m", "adapters", "cases", "export", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert "--format" in out.stdout
