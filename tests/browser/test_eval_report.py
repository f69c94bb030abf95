"""The eval's HTML report in Debian's chromium, with JavaScript off: everything is there to read."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from config.settings import AnthropicSettings, RedisSettings, Settings
from tools.eval.cli import run_report
from tools.eval.report import render_html
from tools.eval.runner import RunOptions
from tools.eval.scenarios import default_suite_dir, load_suite

pytestmark = pytest.mark.browser


def demo_report() -> dict[str, Any]:
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None))
    suite = load_suite([default_suite_dir()])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # sync Playwright owns this thread's event loop
        return pool.submit(asyncio.run, run_report(settings, suite, RunOptions(concurrency=8), progress=False)).result()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = demo_report()
    report["scenarios"][0]["title"] = "<script>document.title='pwned'</script>"
    path = tmp_path_factory.mktemp("eval-report") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def test_the_report_reads_without_script_and_keeps_payloads_as_text(browser, report_file, tmp_path):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 1400})
    try:
        page = context.new_page()
        page.goto(report_file.as_uri())
        assert page.title().startswith("threadguard eval: offline demo model")
        assert page.locator("h1").inner_text() == "threadguard eval scorecard"
        assert page.locator(".demo").is_visible()
        chart = page.locator("svg[role=img]")
        assert chart.is_visible() and chart.locator("rect").count() == 2 * 9  # 8 classes and overall
        table = page.locator("table").first
        assert "at-risk threads ended (must be 0)" in table.inner_text()
        # a scenario's details open without any script
        details = page.locator("details").first
        assert not details.locator("table").is_visible()
        details.locator("summary").click()
        assert details.locator("table").is_visible()
        # the injected title is shown as text, never run
        assert "<script>document.title='pwned'</script>" in details.locator("summary").inner_text()
        shot = tmp_path / "eval-report.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
    finally:
        context.close()
