"""``threadguard eval`` as a user runs it: the offline demo model on embedded defaults, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tools.eval.scenarios import default_suite_dir, load_suite

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "REDIS_", "THREADGUARD_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "adapters", "eval", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd, check=False)


def test_the_demo_model_runs_the_whole_suite_on_embedded_defaults_in_under_a_minute(tmp_path):
    started = time.monotonic()
    result = run(["--json", str(tmp_path / "demo.json")], cwd=str(tmp_path), timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed < 60
    out = result.stdout
    assert out.startswith("threadguard eval: offline demo model (not Claude) [offline]")
    assert "at-risk threads ended (must be 0)" in out and "HTML report: eval-report.html" in out
    report = json.loads((tmp_path / "demo.json").read_text())
    n = len(load_suite([default_suite_dir()]).scenarios)
    assert report["run"]["offline"] and report["run"]["scenarios"] == n == len(report["scenarios"])
    assert report["run"]["prices"] == "offline demo model: no cost"
    overall = report["scorecard"]["classes"]["overall"]
    assert overall["errors"]["count"] == [0]
    # the demo model recognises a few English phrases: it walks the English ladder and no more
    assert report["scorecard"]["classes"]["benign"]["false_ends"]["count"] == [0]
    assert report["scorecard"]["classes"]["persistent"]["ends_reached"]["count"][0] >= 5
    assert overall["at_risk_ended"]["count"] == [0]
    page = (tmp_path / "eval-report.html").read_text()
    assert "Offline demo model: not Claude" in page and "<svg" in page and "<script" not in page
    assert "Traceback" not in result.stderr


def test_bad_input_gets_a_clear_message_and_no_traceback(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("class = 'benign'\n[[scenario]]\nid = 'x'\nturns = [{say = 'hi', kind = 'evil'}]\n")
    results = [result := run([str(broken)])]
    assert result.returncode == 1 and "turn kind 'evil'" in result.stderr
    results.append(result := run([str(tmp_path / "missing")]))
    assert result.returncode != 0 and "no such file or directory" in result.stderr
    not_a_report = tmp_path / "base.json"
    not_a_report.write_text("{\"hello\": 1}")
    results.append(result := run(["--baseline", str(not_a_report), "--only", "user-end-command-en"]))
    assert result.returncode != 0 and "not a threadguard eval JSON report" in result.stderr
    results.append(result := run(["--only", "no-such-class"]))
    assert result.returncode != 0 and "holds no scenario" in result.stderr
    assert not [r for r in results if "Traceback" in r.stderr + r.stdout]


def test_only_and_repeat_run_a_selection_several_times(tmp_path):
    result = run(["--only", "user_end", "--only", "risk-direct-en", "--repeat", "2", "--json",
                  str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["repeat"] == 2 and report["run"]["scenarios"] == 11
    assert len(report["scenarios"]) == 22
    passed = report["scorecard"]["classes"]["overall"]["passed"]
    assert passed["of"] == [11, 11] and passed["sd"] == 0.0  # the demo model is deterministic
    assert "%±" in result.stdout
