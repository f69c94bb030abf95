"""The Slack load bench, small and fast: real ``threadguard slack --http`` workers, the Slack stand-in
enforcing Slack's rate limits. Asserts only that every answer arrived once and complete and that the
figures were produced (timings belong to ``bench/slack_load_bench.py``), and that the bench's check
catches an answer cut short, one shown twice and one lost."""

from __future__ import annotations

import pytest

from bench.slack_load import Load, Spec, answer_for, marker, measure

pytestmark = pytest.mark.timeout(180)


async def test_a_small_load_is_answered_once_and_complete_and_measured() -> None:
    spec = Spec(6, 1, channels=3, answer_chars=200, chunk_chars=20, pace=0.02, first_token=0.1, timeout=90,
                idle_seconds=1.0)
    async with Load(spec) as load:
        result = await measure(load)
        assert result.ok, result.problems
        assert len(result.latencies) == 6 and all(latency >= 0 for latency in result.latencies)
        assert result.throughput > 0 and result.elapsed > 0
        assert result.model_calls == 6
        assert result.slack_calls["chat.postMessage"] + result.slack_calls["chat.startStream"] >= 6
        assert result.scripts_per_turn > 0 and result.commands_by_name
        assert result.idle_before >= 0 and result.idle_after >= 0
        assert result.ack_p99 > 0 and result.commands_per_turn >= 0

        timeline = load.timeline
        [cut] = timeline.holding(marker(0))
        timeline[cut] = timeline[cut][:60]
        [twice] = timeline.holding(marker(1))
        timeline["9999999999.000100"] = timeline[twice]
        [lost] = timeline.holding(marker(2))
        del timeline[lost]
        whole = len(answer_for(0, spec.answer_chars))
        assert load.check() == [f"thread 0: answer incomplete (60 of {whole} characters shown)",
                                "thread 1: answer shown in 2 messages", "thread 2: answer missing"]
