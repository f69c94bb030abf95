"""The eval's engine driver and runner on a few scenarios, through the real SDK and the in-process store."""

from __future__ import annotations

import pytest

from bot.bootstrap import build_runtime
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.anthropic_standin import http_error
from tests.support.scripted_claude import Oracle, careless, well_behaved
from tools.eval.runner import RunOptions, SuiteRunner
from tools.eval.scenarios import default_suite_dir, load_suite
from tools.eval.scorecard import check, facts_of

SUITE = load_suite([default_suite_dir()])
ORACLE = Oracle(SUITE)


def pick(*ids: str):
    return [s for s in SUITE.scenarios if s.id in ids]


@pytest.fixture
async def runner(anthropic_standin):
    settings = Settings(anthropic=AnthropicSettings(api_key="test-key", base_url=anthropic_standin.base_url,
                                                    max_retries=0, timeout=5),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    base = build_runtime(settings)
    assert base.embedded_store
    yield SuiteRunner(base, RunOptions(concurrency=2, retries=2))
    await base.aclose()


async def test_a_failed_model_call_retries_the_scenario_on_a_fresh_conversation(runner, anthropic_standin):
    anthropic_standin.enqueue(http_error(500, should_retry=False))
    anthropic_standin.responder = well_behaved(ORACLE)
    [scenario] = pick("persistent-bomb-en")
    run = await runner.run_scenario(scenario, 0)
    assert run.attempts == 2 and run.error is None
    assert len({t.thread for t in run.turns}) == 1 and run.turns[0].thread.endswith("-a2-1")
    assert check(scenario, facts_of(run)) == []


async def test_a_scenario_that_keeps_failing_is_an_error_not_a_pass(runner, anthropic_standin):
    anthropic_standin.responder = lambda body: http_error(500, should_retry=False)
    [scenario] = pick("benign-linux-zombie-en")
    run = await runner.run_scenario(scenario, 0)
    assert run.attempts == 3 and run.error.startswith("turn 1 failed (say): ")
    assert "AI service" in run.error and "500" not in run.error  # the engine's plain words, not the error
    assert check(scenario, facts_of(run)) == [f"did not complete: {run.error}"]


async def test_refused_end_attempts_are_attributed_to_their_turns_with_the_reason(runner, anthropic_standin):
    anthropic_standin.responder = careless(ORACLE)
    [scenario] = pick("persistent-attack-plan-en")
    run = await runner.run_scenario(scenario, 0)
    assert [len(t.end_attempts) for t in run.turns] == [1, 1, 1, 1]
    assert [t.refused_ends for t in run.turns] == [["before the warning"], ["before the warning"],
                                                   ["in the warning's turn"], []]
    assert [[e.kind for e in t.events] for t in run.turns] == [
        ["redirection"], ["redirection"], ["redirection", "warning"], ["end"]]
    assert run.turns[-1].events[0].reason == "persistent_abuse"


async def test_a_branch_carries_the_ladder_and_is_observed_from_its_own_turns(runner, anthropic_standin):
    anthropic_standin.responder = well_behaved(ORACLE)
    [scenario] = pick("branch-attack-edit-early-en")
    run = await runner.run_scenario(scenario, 0)
    edit = next(t for t in run.turns if t.action == "edit")
    assert edit.branched and edit.branch_start == {"redirections": 1, "warned": False, "at_risk": False}
    # the branch's own turns: redirection 2, then 3 with the warning, then the end
    after = run.turns[run.turns.index(edit):]
    assert [[e.kind for e in t.events] for t in after] == [["redirection"], ["redirection", "warning"], ["end"]]
    facts = facts_of(run)
    assert (facts.ends, facts.branches, facts.branch_carried_ladder, facts.ended) == (2, 1, True, True)
    assert check(scenario, facts) == []


async def test_a_community_threshold_of_one_moves_the_end_and_edits_stay_within_the_conversation(
        anthropic_standin):
    settings = Settings(anthropic=AnthropicSettings(api_key="test-key", base_url=anthropic_standin.base_url),
                        redis=RedisSettings(url=None))
    base = build_runtime(settings, communities=Communities(overrides={"strict": CommunityConfig(threshold=1)}))
    try:
        runner = SuiteRunner(base, RunOptions(community="strict"))
        assert runner.threshold == 1
        anthropic_standin.responder = well_behaved(ORACLE)
        [scenario] = pick("branch-bomb-edit-last-en")
        run = await runner.run_scenario(scenario, 0)
        # warned in turn 1, ended in turn 2; the edit of message 4 becomes an edit of the last one sent (2)
        assert [[e.kind for e in t.events] for t in run.turns] == [
            ["redirection", "warning"], ["end"], ["end"]]
        assert run.turns[-1].branch_start == {"redirections": 1, "warned": True, "at_risk": False}
        assert all(t.thread.startswith("console:strict:") for t in run.turns)
        assert check(scenario, facts_of(run)) == []
    finally:
        await base.aclose()
