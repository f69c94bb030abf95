"""Running the suite: every scenario (times ``repeat``) through a real engine on the in-process store.

Each scenario run gets an engine of its own, built by the composition root around the configured model
client (shared, wrapped per run in a ``RecordingModel``) and the in-process Redis. A run whose turn
failed (the model API failed after the SDK's own retries) is retried on a fresh conversation.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.bootstrap import Runtime, build_runtime
from tools.eval.driver import RecordingModel, ScenarioDriver, TurnRecord
from tools.eval.files import attachment
from tools.eval.scenarios import Scenario, Step, Suite

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    community: str = "local"
    concurrency: int = 4
    repeat: int = 1
    retries: int = 2


@dataclass
class ScenarioRun:
    """One run of one scenario: the member turns and what the engine did."""

    scenario: Scenario
    repeat: int
    turns: list[TurnRecord] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.scenario.id, "repeat": self.repeat, "attempts": self.attempts, "error": self.error,
                "seconds": round(self.seconds, 3), "turns": [t.to_dict() for t in self.turns]}


Progress = Callable[[ScenarioRun], None]


class SuiteRunner:
    """Runs scenarios against engines built from one base runtime (its settings, model and store)."""

    def __init__(self, base: Runtime, options: RunOptions) -> None:
        self.base = base
        self.options = options
        self.threshold = base.communities.get(options.community).threshold
        self._run_id = secrets.token_hex(3)

    async def run(self, suite: Suite, progress: Progress | None = None) -> list[ScenarioRun]:
        gate = asyncio.Semaphore(max(1, self.options.concurrency))
        jobs = [(s, r) for r in range(self.options.repeat) for s in suite.scenarios]

        async def one(scenario: Scenario, repeat: int) -> ScenarioRun:
            async with gate:
                result = await self.run_scenario(scenario, repeat)
            if progress is not None:
                progress(result)
            return result

        return list(await asyncio.gather(*(one(s, r) for s, r in jobs)))

    async def run_scenario(self, scenario: Scenario, repeat: int) -> ScenarioRun:
        run = ScenarioRun(scenario, repeat)
        started = time.perf_counter()
        for attempt in range(1, self.options.retries + 2):
            run.attempts = attempt
            try:
                run.turns = await self._play(scenario, f"{self._run_id}-{scenario.id}-r{repeat}-a{attempt}")
            except Exception as exc:  # a bug must not cost the other scenarios their results
                log.exception("scenario %s: unexpected error", scenario.id)
                run.turns, run.error = [], f"unexpected error ({type(exc).__name__})"
                continue
            failed = next((t for t in run.turns if t.error), None)
            run.error = None if failed is None else (
                f"turn {failed.number} failed ({failed.action}): {failed.error_text or 'no answer'}")
            if run.error is None:
                break
        run.seconds = time.perf_counter() - started
        return run

    async def _play(self, scenario: Scenario, tag: str) -> list[TurnRecord]:
        model = RecordingModel(self.base.model)
        runtime = build_runtime(self.base.settings, model=model, redis=self.base.redis,
                                communities=self.base.communities)
        driver = ScenarioDriver(runtime, model, community=self.options.community, tag=tag)
        turns: list[TurnRecord] = []
        for step in _schedule(scenario):
            if step.action == "say" and driver.ended:
                if scenario.cycle:
                    break
                continue  # a frozen thread: the member's later messages are not turns of the scenario
            if step.action == "say" and sum(1 for t in turns if t.action != "end_command") >= scenario.max_turns:
                break
            record = TurnRecord(len(turns) + 1, step.action, step.kind, step.text, driver.thread.key,
                                member=step.member)
            turns.append(record)
            if step.action == "say":
                await driver.say(record, tuple(attachment(f) for f in step.files))
            elif step.action == "edit":
                await driver.edit(record, step.edit)
            else:
                await driver.end_command(record)
            if record.error:
                break
        return turns


def _schedule(scenario: Scenario) -> list[Step]:
    """The member's steps; cycling scenarios repeat their messages up to ``max_turns``."""
    steps = list(scenario.steps)
    if not scenario.cycle:
        return steps
    says = [s for s in steps if s.action == "say"] or steps
    while sum(1 for s in steps if s.action != "end_command") < scenario.max_turns:
        steps.extend(says)
    return steps
