"""Take docs/eval-report.png: the eval's HTML report for the offline demo model, in headless Chromium.

    python3 scripts/eval_screenshot.py [--out docs/eval-report.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import AnthropicSettings, RedisSettings, Settings  # noqa: E402
from tools.eval.cli import run_report  # noqa: E402
from tools.eval.report import render_html  # noqa: E402
from tools.eval.runner import RunOptions  # noqa: E402
from tools.eval.scenarios import default_suite_dir, load_suite  # noqa: E402

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


async def main(out: Path) -> None:
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None))
    report = await run_report(settings, load_suite([default_suite_dir()]), RunOptions(concurrency=8), progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "report.html"
        page_file.write_text(render_html(report), encoding="utf-8")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = await browser.new_context(java_script_enabled=False, viewport={"width": 1240, "height": 1180})
            page = await context.new_page()
            await page.goto(page_file.as_uri())
            await page.screenshot(path=str(out))
            await browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "eval-report.png")
    asyncio.run(main(parser.parse_args().out))
