"""Slack under load, with real processes: N threads started at once in one workspace, one worker and two.

    python bench/slack_load_bench.py                          # 20, 60 and 200 threads x 1 and 2 workers
    python bench/slack_load_bench.py --threads 20,60 --workers 1
    python bench/slack_load_bench.py --threads 200 --workers 1 --channels 20

Each run starts a private redis-server, the Slack stand-in (enforcing Slack's documented Web API rate
limits: 429 with Retry-After past a tier, see ``tests/support/slack_rate_limits.py``), the Messages API
stand-in (each thread's answer streamed in paced chunks) and 1 or 2 ``threadguard slack --http PORT``
worker processes with production settings, then sends every thread's first message at once as signed
Events API requests, spread round robin over the workers and over ``--channels`` channels.

Figures: how long after the model's last token each thread's whole answer was visible (p50, p90, p99,
max), read from the stand-in's timeline of what its bot messages showed whatever Web API methods showed
it; turns a second (threads / time from sending to the last answer visible); 429s received and
successful calls per Web API method; model calls; Redis commands per turn (INFO commandstats over the
traffic, less what the workers sent idle over as long) and Lua script calls per turn; Redis commands a
second over 5 s of idling before the traffic and from a second after it stopped (the bench's own INFO
reads left out). A figure counts only if the work succeeded: every answer must be shown exactly once and
complete, or the run is reported failed and the bench exits 1. Targets (from the load issue) are printed
with met / NOT met, never asserted: 60 and 200 threads, one worker and two: p50 <= 3 s and p99 <= 10 s
after the model's last token, no 429; one worker's throughput at 200 threads >= 80% of its throughput at
20; Redis commands a second after the traffic stopped near zero (read here as at most 1 a second per
worker process; the idle rate before the traffic is printed beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.slack_load import Result, Spec, run
from tests.support.slack_rate_limits import SlackRateLimits

P50_TARGET, P99_TARGET, SCALING_TARGET, IDLE_PER_WORKER = 3.0, 10.0, 0.8, 1.0


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def _seconds(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: no latency measured


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def _rounded(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in values.items()) or "none"


def header(args: argparse.Namespace) -> None:
    rate = args.chunk_chars / args.pace
    print("Slack load bench: one workspace; every thread's first message sent at once as a signed Events API "
          "request, round robin over the workers")
    print(f"  threads spread over {args.channels} channels; answers of {args.answer_chars} characters streamed at "
          f"{rate:.0f} characters/s ({args.chunk_chars}-character chunks), first token after {args.first_token} s")
    print("  workers: `threadguard slack --http PORT` processes with production settings, one private redis-server")
    print("  Slack's documented rate limits enforced by the stand-in (429 with Retry-After past them):")
    for line in SlackRateLimits().describe():
        print(f"    {line}")
    load = os.getloadavg()
    print(f"  machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    print()


def row(r: Result) -> str:
    s = r.spec
    return (f"{s.threads:>7} {s.workers:>7} | {_seconds(r.percentile(50)):>6} {_seconds(r.percentile(90)):>6} "
            f"{_seconds(r.percentile(99)):>6} {_seconds(r.percentile(100)):>6} | {r.throughput:>7.2f} | "
            f"{r.model_calls:>5} | {r.commands_per_turn:>6.1f} {r.scripts_per_turn:>5.1f} | "
            f"{r.idle_before:>5.1f} {r.idle_after:>5.1f} | {'ok' if r.ok else 'FAILED'}")


def table(results: list[Result]) -> None:
    print("threads workers | answer visible after last token (s)  | turns/s | model | Redis/turn   | "
          "Redis/s idle")
    print("                |    p50    p90    p99    max |         | calls | cmds  Lua    | before after |")
    for r in results:
        print(row(r))
    print()
    for r in results:
        s = r.spec
        limits = f" (limits reached: {_counts(r.refused_by)})" if r.refused_by else ""
        print(f"{s.threads} threads x {s.workers} worker(s): 429s: {_counts(r.refused)}{limits}; Slack calls answered: "
              f"{_counts(r.slack_calls)}; event acks p99 {r.ack_p99 * 1000:.0f} ms ({r.acks_late} over 3 s); "
              f"Redis commands per turn, most sent: {_rounded(r.commands_by_name)}; "
              f"Redis commands/s after the traffic: {_rounded(r.idle_after_by_command)}")
    print()


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(results: list[Result]) -> None:
    print("targets:")
    for r in results:
        s = r.spec
        if not r.ok:
            print(f"  {s.threads} threads x {s.workers} worker(s): no figure counts: the run failed")
            continue
        label = f"  {s.threads} threads x {s.workers} worker(s):"
        p50, p99 = r.percentile(50), r.percentile(99)
        if s.threads >= 60:
            print(f"{label} full answer visible p50 {p50:.2f} s (<= {P50_TARGET:g} s): {_met(p50 <= P50_TARGET)}; "
                  f"p99 {p99:.2f} s (<= {P99_TARGET:g} s): {_met(p99 <= P99_TARGET)}")
        print(f"{label} 429s received {sum(r.refused.values())} (0: within Slack's limits): "
              f"{_met(not r.refused)}")
        ceiling = IDLE_PER_WORKER * s.workers
        print(f"{label} Redis commands/s a second after the traffic stopped {r.idle_after:.1f} (near zero: at most "
              f"{ceiling:g}; idle before the traffic {r.idle_before:.1f}): {_met(r.idle_after <= ceiling)}")
    by = {(r.spec.threads, r.spec.workers): r for r in results if r.ok}
    for workers in sorted({w for _, w in by}):
        low, high = by.get((20, workers)), by.get((200, workers))
        if low and high and low.throughput > 0:
            ratio = high.throughput / low.throughput
            print(f"  {workers} worker(s): throughput at 200 threads {high.throughput:.2f} turns/s, at 20 "
                  f"{low.throughput:.2f}: {ratio:.0%} (>= {SCALING_TARGET:.0%}): {_met(ratio >= SCALING_TARGET)}")


async def main(args: argparse.Namespace) -> int:
    if args.keep_logs:
        os.environ["TG_KEEP_WORKER_LOGS"] = "1"
    header(args)
    results: list[Result] = []
    for threads in args.threads:
        for workers in args.workers:
            spec = Spec(threads, workers, channels=args.channels, answer_chars=args.answer_chars,
                        chunk_chars=args.chunk_chars, pace=args.pace, first_token=args.first_token,
                        timeout=args.timeout)
            print(f"running {threads} threads x {workers} worker(s) …", flush=True)
            result = await run(spec)
            results.append(result)
            print(row(result), flush=True)
            if args.keep_logs:
                print(f"    worker logs: {', '.join(result.logs)}")
            for problem in result.problems[:10]:
                print(f"    {problem}")
            if len(result.problems) > 10:
                print(f"    … and {len(result.problems) - 10} more")
    print()
    table(results)
    targets(results)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\n{len(failed)} run(s) FAILED: answers lost, cut short or shown twice (see above)")
        return 1
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=_ints, default=[20, 60, 200], help="comma separated (default 20,60,200)")
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="comma separated (default 1,2)")
    parser.add_argument("--channels", type=int, default=20, help="channels the threads are spread over")
    parser.add_argument("--answer-chars", type=int, default=600)
    parser.add_argument("--chunk-chars", type=int, default=24)
    parser.add_argument("--pace", type=float, default=0.08, help="seconds between streamed chunks")
    parser.add_argument("--first-token", type=float, default=0.5, help="seconds before an answer's first token")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every answer")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs (their paths are printed)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
