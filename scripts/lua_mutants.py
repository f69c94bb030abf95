"""Hand-written mutants of the store's Lua scripts, which mutmut cannot reach (they are Python strings).

Each mutant is one text substitution in the Lua of ``bot/store/`` of the kind a later edit could make:
a fencing or replay check dropped, a bound off by one, an expiry lost, an index left stale, an ownership
test loosened, a dedupe key kept or forgotten at the wrong time. For each one the script copies the work
tree to a scratch directory, applies the substitution there (the repository is never written), runs the
store tests (real redis-server, 3-node Redis Cluster and the in-process Redis) and reports the mutant
killed (a test failed) or survived.

    python3 scripts/lua_mutants.py                    # every mutant
    python3 scripts/lua_mutants.py owns-prefix renew-fence  # some of them
    python3 scripts/lua_mutants.py --list
    python3 scripts/lua_mutants.py --source DIR       # mutate and test another tree (an older commit)

A mutant's text is looked up in every file under ``bot/store/`` and must occur exactly once there; one
that is not found (the code moved or changed) is reported ``missing``, never silently skipped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TESTS = (
    "tests/integration/test_store_contract.py",
    "tests/integration/test_key_lifetimes.py",
    "tests/integration/test_review_desk.py",
    "tests/integration/test_window_cache.py",
    "tests/integration/test_redis_restart.py",
    "tests/integration/test_concurrency.py",
    "tests/integration/test_pending_case_next_event.py",
    "tests/integration/test_usage.py",
)


#: What the limit mutants run instead: the limits through the engine on all three stores.
LIMIT_TESTS = ("tests/integration/test_limits.py",)


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    old: str
    new: str
    #: The test files that must kill it (default ``TESTS``).
    tests: tuple[str, ...] = TESTS


M = Mutant
MUTANTS = (
    # --- fencing and ownership ---------------------------------------------------------------------
    M("owns-prefix", "ownership", r"string.sub(first, 1, #head + 1) == head .. '\\t'",
      r"string.sub(first, 1, #head) == head"),
    M("owns-token", "fencing", "if fence ~= token then return false end", "if false then return false end"),
    M("owns-no-head", "ownership", "if head == '' then return true end", "if head == '' then return false end"),
    M("grant-same-token", "fencing",
      "redis.call('HINCRBY', state, 'fence', 1))\n  redis.call('SET', lease, token, 'PX', ttl)",
      "redis.call('HINCRBY', state, 'fence', 0))\n  redis.call('SET', lease, token, 'PX', ttl)"),
    M("claim-live-lease", "fencing", "if left ~= -2 then return {'held', left} end",
      "if left == -1 then return {'held', left} end"),
    M("ingest-ignores-lease", "fencing", "if take_lease == '1' and redis.call('EXISTS', lease) == 0 then",
      "if take_lease == '1' then"),
    M("take-ignores-lease", "fencing", "if redis.call('EXISTS', lease) == 1 then return {'busy'} end", ""),
    M("renew-fence", "fencing", "if redis.call('HGET', state, 'fence') ~= token then return 0 end", ""),
    M("renew-any-lease", "fencing", "if redis.call('GET', lease) == token then", "if true then"),
    M("renew-no-pexpire", "expiry", "else redis.call('PEXPIRE', lease, lease_ttl) end",
      "else redis.call('PTTL', lease) end"),
    M("commit-on-ended", "fencing", "if status == 'ended' then", "if false then"),
    # --- replay after a lost reply --------------------------------------------------------------------
    M("commit-no-replay", "replay", "local again = replayed(", "local again = false and replayed("),
    M("drop-no-replay", "replay", "return replayed(state, log, lease, inbox, token, entry_id,",
      "return false and replayed(state, log, lease, inbox, token, entry_id,"),
    M("replay-any-token", "replay", r"if last_commit ~= token .. '\\t' .. head then return false end",
      "if not last_commit or not string.find(last_commit, head, 1, true) then return false end"),
    M("replay-superseded-goes-on", "replay", "if fence ~= token then return {result, extra, false} end", ""),
    M("commit-not-recorded", "replay",
      "if entry_id ~= '' then set('last_commit', last) set('last_result', result) set('last_extra', seq) end", ""),
    M("drop-not-recorded", "replay",
      r"redis.call('HSET', state, 'last_commit', token .. '\\t' .. entry_id, 'last_result', 'ok', "
      "'last_extra', reminded)",
      "redis.call('HGET', state, 'last_commit')"),
    M("commit-keeps-head", "ownership", "if entry_id ~= '' then redis.call('LPOP', inbox) end", ""),
    M("refused-commit-usage-lost", "replay",
      "return reply({'lost_lock', 0}, add(usage_counts))",
      "return reply({'lost_lock', 0}, false)"),
    # --- bounds ---------------------------------------------------------------------------------------
    M("inbox-limit-off-by-one", "bound", "if queued >= tonumber(max_inbox) then",
      "if queued > tonumber(max_inbox) then"),
    M("turn-limit-ignores-inbox", "bound", "if turn + queued >= tonumber(max_turns) then",
      "if turn >= tonumber(max_turns) then"),
    M("window-start-past-log", "bound", "if win > len then win = 0 end", ""),
    M("window-held-from-ignored", "bound", "from <= win and win <= to", "win <= to"),
    M("window-held-entry-ignored", "bound", "and redis.call('LINDEX', log, to - 1) == held then", "then"),
    # --- expiries -------------------------------------------------------------------------------------
    M("dedupe-forever", "expiry", "redis.call('SET', seen, '1', 'NX', 'EX', dedupe)",
      "redis.call('SET', seen, '1', 'NX')"),
    M("inbox-no-expiry", "expiry", "redis.call('PEXPIRE', inbox, idle)", ""),
    M("parked-no-expiry", "expiry", "redis.call('PEXPIRE', parked, park)", ""),
    M("new-state-no-expiry", "expiry",
      "if turn == 0 and redis.call('PTTL', state) < 0 then redis.call('PEXPIRE', state, idle) end", ""),
    M("end-keeps-idle-ttl", "expiry", "redis.call('HINCRBY', state, 'end_seq', 1), 'ended', ended",
      "redis.call('HINCRBY', state, 'end_seq', 1), 'ended', active"),
    M("log-no-expiry", "expiry", "redis.call('PEXPIRE', log, ttl)\nreturn reply(", "return reply("),
    M("reminder-every-time", "expiry", "redis.call('SET', remind, '1', 'NX', 'EX', cooldown)",
      "redis.call('SET', remind, '1', 'EX', cooldown)"),
    M("reopen-no-expiry", "expiry", "redis.call('PEXPIRE', log, ttl)\nreturn 1\n", "return 1\n"),
    # --- index maintenance ----------------------------------------------------------------------------
    M("pending-index-dropped-early", "index", "if left == 0 and pending_index then", "if pending_index then"),
    M("pending-index-not-joined", "index",
      "if pending_index then redis.call('SADD', pending_index, thread_key) end", ""),
    M("due-not-registered", "index", "if due then redis.call('ZADD', due, due_at, thread_key) end", ""),
    M("forget-due-ignores-score", "index", "if score and tonumber(score) == tonumber(seen_score) then",
      "if score then"),
    M("case-not-indexed", "index", "redis.call('ZADD', index, created, n)", ""),
    M("case-id-any-end", "index",
      "if tonumber(redis.call('HGET', state, 'end_seq') or '0') == tonumber(end_seq) then", "if true then"),
    M("appeal-stays-queued", "index", "if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return 0 end",
      "redis.call('ZREM', KEYS[2], ARGV[3])"),
    # --- dedupe keys ----------------------------------------------------------------------------------
    M("case-filed-twice", "dedupe", "if n then return {tonumber(n), 0} end", ""),
    M("unknown-marked-seen", "dedupe", "redis.call('DEL', seen)  -- not seen", ""),
    M("failed-turn-stays-seen", "dedupe", "if forget == '1' then redis.call('DEL', seen) end", ""),
    M("appeal-overwritten", "dedupe", "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end",
      "if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end"),
    M("review-reopened-after-done", "dedupe", "if state == 'reviewed' then return 'reviewed' end", ""),
    # --- frozen threads and parked replies ------------------------------------------------------------
    M("frozen-not-checked", "fencing", "if st[field_at.status] == 'ended' then",
      "if st[field_at.status] == 'frozen' then"),
    M("parked-never-released", "ownership", "if unknown == '' then\n  local waiting",
      "if false then\n  local waiting"),
    # --- spend and rate limits (``bot/store/scripts/limits.py`` and where the scripts apply them) -------
    M("limit-not-checked", "limit", "hit = check_limits(members, yesterday, day, LIMIT_ARGS)", "hit = false",
      LIMIT_TESTS),
    M("limit-at-risk-limited", "limit", "if (members or verdict ~= '') and st[field_at.at_risk] ~= '1' then",
      "if (members or verdict ~= '') then", LIMIT_TESTS),
    M("limit-verdict-lost", "limit", "if hit then return hit[1] .. ' ' .. hit[2] .. ' ' .. hit[3] end", "",
      LIMIT_TESTS),
    M("limit-spend-off-by-one", "limit", "if spent >= ceiling then return {'spend'",
      "if spent > ceiling then return {'spend'", LIMIT_TESTS),
    M("limit-spend-not-from-sums", "limit", "spent = math.floor(spent_micro(day, ARGV[at + 6]))", "spent = 0",
      LIMIT_TESTS),
    M("limit-spend-not-written", "limit",
      "redis.call('HSET', members, '\"\"\" + SPENT + \"\"\"', string.format('%d', math.floor(cost)))",
      "redis.call('HGET', members, '\"\"\" + SPENT + \"\"\"')", LIMIT_TESTS),
    M("limit-tokens-off-by-one", "limit", "tonumber(m[2] or '0') >= per_day", "tonumber(m[2] or '0') > per_day",
      LIMIT_TESTS),
    M("limit-tokens-not-counted", "limit", "redis.call('HINCRBY', members, member, tokens) == tokens",
      "redis.call('HGET', members, member) == tokens", LIMIT_TESTS),
    M("limit-rate-off-by-one", "limit", "if full - now_us > ahead then", "if full - now_us >= ahead then",
      LIMIT_TESTS),
    M("limit-bucket-not-taken", "limit", "redis.call('HSET', members, bucket, string.format('%d', full + interval))",
      "", LIMIT_TESTS),
    M("limit-bucket-from-now", "limit", "if full < now_us then full = now_us end", "full = now_us", LIMIT_TESTS),
    M("limit-bucket-new-each-day", "limit", "tonumber(m[3] or redis.call('HGET', yesterday, bucket) or '0')",
      "tonumber(m[3] or '0')", LIMIT_TESTS),
    M("limit-resets-at-day-start", "limit", "(math.floor(tonumber(now) / 86400000) + 1) * 86400000",
      "math.floor(tonumber(now) / 86400000) * 86400000", LIMIT_TESTS),
    M("limit-members-day-no-expiry", "expiry",
      "redis.call('HSET', members, bucket, string.format('%d', full + interval))\n"
      "    if not m[3] then redis.call('PEXPIRE', members, ", "redis.call('HSET', members, bucket, "
      "string.format('%d', full + interval))\n    if false then redis.call('PEXPIRE', members, ", LIMIT_TESTS),
    M("limit-spent-no-expiry", "expiry",
      "string.format('%d', spent))\n      redis.call('PEXPIRE', members, ", "string.format('%d', spent))\n"
      "      math.max(0, ", LIMIT_TESTS),
    M("limit-told-every-time", "limit",
      "if tonumber(redis.call('HGET', limited, kind) or '0') > tonumber(now) then return 0 end", "", LIMIT_TESTS),
    M("limit-alert-every-commit", "limit", "redis.call('HSETNX', alerts, tostring(level), '1') == 1",
      "redis.call('HSET', alerts, tostring(level), '1') >= 0", LIMIT_TESTS),
    M("limit-cluster-spend-unpriced", "limit", "if (priced and i <= 4) or values[i] ~= '0' then",
      "if values[i] ~= '0' then", LIMIT_TESTS),
)

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                ".benchmarks", "mutants")


def locate(tree: Path, mutant: Mutant) -> Path | None:
    """The one file under ``bot/store`` that holds the mutant's text exactly once (None otherwise)."""
    found = [p for p in sorted((tree / "bot" / "store").rglob("*.py")) if p.read_text().count(mutant.old) == 1]
    others = [p for p in (tree / "bot" / "store").rglob("*.py") if p.read_text().count(mutant.old) > 1]
    return found[0] if len(found) == 1 and not others else None


def run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--timeout=60", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # noqa: S603
                              timeout=timeout, check=False)
        code = done.returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--source", type=Path, default=ROOT, help="the tree to mutate and test")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutant(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name:28} {m.kind:9} {m.old!r} -> {m.new!r}")
        return 0
    with tempfile.TemporaryDirectory(prefix="tg-lua-mutants-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(args.source, tree, ignore=IGNORE)
        wanted = sorted({t for m in chosen for t in m.tests})
        tests = [t for t in wanted if (tree / t).exists()]
        code, seconds = run_tests(tree, tests, args.timeout)
        if code != 0:
            print(f"the unmutated tree fails its tests (exit {code}); nothing to measure", file=sys.stderr)
            return 1
        print(f"baseline: {len(tests)} test files pass in {seconds:.0f} s", flush=True)
        results: dict[str, list[str]] = {}
        for m in chosen:
            path = locate(tree, m)
            if path is None:
                status, seconds = "missing", 0.0
            else:
                original = path.read_text()
                path.write_text(original.replace(m.old, m.new, 1))
                try:
                    code, seconds = run_tests(tree, [t for t in m.tests if (tree / t).exists()], args.timeout)
                finally:
                    path.write_text(original)
                status = {0: "survived", 1: "killed", -1: "timeout"}.get(code, f"error (exit {code})")
            results.setdefault(status, []).append(m.name)
            print(f"{m.name:28} {m.kind:9} {status:9} {seconds:5.0f} s", flush=True)
    killed = len(results.get("killed", []))
    print(f"\nlua: {killed}/{len(chosen)} killed ({100.0 * killed / len(chosen):.1f}%)")
    for status, names in sorted(results.items()):
        if status != "killed":
            print(f"   {status}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
