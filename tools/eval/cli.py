"""``threadguard eval``: run the scenario suite through the real engine and write the scorecard."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from adapters.runner import setup_logging
from bot.bootstrap import build_runtime
from bot.errors import ThreadguardError
from bot.usage import TokenTotals
from config.settings import AnthropicSettings, RedisSettings, Settings
from tools.eval.pricing import Prices, prices_for
from tools.eval.report import FORMAT, render_html, render_text
from tools.eval.runner import RunOptions, ScenarioRun, SuiteRunner
from tools.eval.scenarios import Suite, SuiteError, load_suite
from tools.eval.scorecard import compare, score

DEFAULT_HTML = Path("eval-report.html")


def register(main: click.Group) -> None:
    main.add_command(eval_command)


@click.command("eval")
@click.argument("suite", nargs=-1, type=click.Path(path_type=Path))
@click.option("--only", multiple=True, help="Run only these classes or scenario ids (repeatable).")
@click.option("--model", "model_name", default=None, help="Claude model name (default: ANTHROPIC_MODEL).")
@click.option("--community", default="local", show_default=True,
              help="Community whose settings (threshold, crisis resources) apply.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Scenarios run at once.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 100),
              help="Runs per scenario; rates are then shown with their spread.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 10),
              help="Re-runs of a scenario whose turn failed (after the SDK's own retries).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the JSON here.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=DEFAULT_HTML, show_default=True,
              help="Write the HTML report here.")
@click.option("--baseline", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="A previous --json report: show the diff and exit 1 on a regression.")
@click.option("--tolerance", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="How much a rate may worsen against the baseline before it counts as a regression.")
@click.option("--price", default=None, metavar="INPUT,OUTPUT", help="USD per million tokens for the estimate.")
def eval_command(suite: tuple[Path, ...], only: tuple[str, ...], model_name: str | None, community: str,
                 concurrency: int, repeat: int, retries: int, json_path: Path | None, html_path: Path,
                 baseline: Path | None, tolerance: float, price: str | None) -> None:
    """Run the scenario suite (default: the bundled evals/) and print the scorecard.

    Uses Claude when ANTHROPIC_API_KEY is set, otherwise the offline demo model (labelled). State lives in
    the in-process store; nothing touches your Redis. Exit status: 0, or 1 on a regression against
    --baseline.
    """
    try:
        chosen = load_suite(list(suite), set(only) or None)
    except (SuiteError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    previous = _read_baseline(baseline) if baseline else None
    settings = _settings(model_name)
    setup_logging(settings, quiet=True)
    options = RunOptions(community=community, concurrency=concurrency, repeat=repeat, retries=retries)
    try:
        report = asyncio.run(run_report(settings, chosen, options, price))
    except ThreadguardError as exc:
        raise click.ClickException(exc.user_message) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if previous is not None and baseline is not None:
        changes = compare(report, previous, tolerance)
        report["baseline"] = {"file": str(baseline), "tolerance": tolerance,
                              "changes": [c.to_dict() for c in changes]}
    click.echo(render_text(report))
    _write(html_path, render_html(report))
    click.echo(f"\nHTML report: {html_path}")
    if json_path is not None:
        _write(json_path, json.dumps(report, ensure_ascii=False, indent=1))
        click.echo(f"JSON report: {json_path}")
    if report.get("baseline") and any(c["regression"] for c in report["baseline"]["changes"]):
        raise SystemExit(1)


def _settings(model_name: str | None) -> Settings:
    anthropic = AnthropicSettings()
    if model_name:
        anthropic = anthropic.model_copy(update={"model": model_name})
    return Settings(anthropic=anthropic, redis=RedisSettings(url=None))


def _read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the baseline {path}: not a JSON report") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise click.ClickException(f"{path} is not a threadguard eval JSON report ({FORMAT})")
    return data


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc


async def run_report(settings: Settings, suite: Suite, options: RunOptions, price: str | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Run the suite with the model the settings name and return the report (what --json writes)."""
    base = build_runtime(settings)
    try:
        model = base.model
        prices = prices_for(getattr(model, "model", model.label), model.offline, price)
        runner = SuiteRunner(base, options)
        started, clock = datetime.datetime.now(datetime.UTC), time.perf_counter()
        total = len(suite.scenarios) * options.repeat
        if progress:
            with _progress(total) as tick:
                runs = await runner.run(suite, tick)
        else:
            runs = await runner.run(suite)
        seconds = time.perf_counter() - clock
    finally:
        await base.aclose()
    return assemble(suite, runs, options, runner.threshold, model.label, model.offline, prices,
                    started.isoformat(timespec="seconds"), seconds)


def assemble(suite: Suite, runs: list[ScenarioRun], options: RunOptions, threshold: int, label: str,
             offline: bool, prices: Prices | None, started: str, seconds: float) -> dict[str, Any]:
    card = score(runs, options.repeat)

    def cost(tokens: TokenTotals) -> float | None:
        return None if prices is None else prices.cost(tokens)

    return {
        "format": FORMAT,
        "run": {"model": label, "offline": offline, "community": options.community, "threshold": threshold,
                "repeat": options.repeat, "concurrency": options.concurrency, "retries": options.retries,
                "scenarios": len(suite.scenarios), "suite_files": suite.files, "suite_digest": suite.digest,
                "started": started, "seconds": round(seconds, 3),
                "prices": None if prices is None else prices.source},
        "scorecard": card.to_dict(cost),
        "scenarios": card.results,
    }


@contextlib.contextmanager
def _progress(total: int) -> Any:
    """A progress bar on stderr (plain lines when stderr is not a terminal)."""
    with click.progressbar(length=total, label="scenarios", file=sys.stderr, show_pos=True) as bar:
        def tick(_run: ScenarioRun) -> None:
            bar.update(1)

        yield tick
