#!/usr/bin/env bash
# Mutation run (mutmut) over the rules the suite must guard: the ladder (bot/policy.py), the history
# (bot/history.py), input checks (bot/validation.py), the dashboard's escaping and exports, the turn
# pipeline (bot/pipeline.py, with the inbox entry's stored form in bot/store/inbox_entry.py), the worker's
# loops (bot/worker.py), the review desk and the moderators' decisions (bot/review.py, bot/moderation.py) and the
# usage code (bot/usage.py, bot/store/usage.py); and, as target `lua`, the hand-written mutants of the
# store's Lua scripts (scripts/lua_mutants.py: mutmut cannot mutate Lua inside Python strings).
#
#   bash scripts/mutation.sh                 # every target below
#   bash scripts/mutation.sh policy export   # some of them
#   bash scripts/mutation.sh pipeline worker lua
#
# Each target runs in a scratch copy of the work tree (tracked and untracked files, not ignored ones)
# under $MUTATION_DIR (default /tmp/threadguard-mutation/<target>), with only the tests that exercise
# that code, so nothing is written into the repository. It prints the score per target and lists every
# surviving mutant; `cd $MUTATION_DIR/<target> && python3 -m mutmut show NAME` shows one.
# Not part of CI: it takes minutes (see docs/mutation.md for the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE=${MUTATION_DIR:-/tmp/threadguard-mutation}
CHILDREN=${MUTATION_CHILDREN:-2}

python3 -c 'import mutmut' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'mutmut==3.8.1'  # as pinned in the mutation extra

# target -> "file to mutate | mutant name globs | tests"
declare -A FILE GLOBS TESTS SKIP
FILE[policy]=bot/policy.py
GLOBS[policy]='bot.policy.*'
TESTS[policy]='tests/unit/test_policy.py tests/unit/test_categories.py tests/unit/test_policy_results.py tests/integration/test_engine_claude.py'
FILE[history]=bot/history.py
GLOBS[history]='bot.history.*'
TESTS[history]='tests/unit/test_validation_history.py tests/unit/test_history_rules.py tests/integration/test_branch_and_reopen.py'
FILE[validation]=bot/validation.py
GLOBS[validation]='bot.validation.*'
TESTS[validation]='tests/unit/test_validation_history.py tests/unit/test_validation_rules.py tests/integration/test_bad_input.py'
FILE[export]=adapters/dashboard/export.py
GLOBS[export]='adapters.dashboard.export.*'
TESTS[export]='tests/unit/dashboard/test_dashboard_units.py tests/unit/dashboard/test_export_injection.py'
# The escaping: the template environment (autoescape) and the filters that decide what becomes markup.
FILE[escaping]='adapters/dashboard/views.py adapters/dashboard/app.py'
GLOBS[escaping]='adapters.dashboard.views.x__safe_url* adapters.dashboard.views.x__category_label* adapters.dashboard.views.x__when* adapters.dashboard.app.x_template_env*'
TESTS[escaping]='tests/unit/dashboard/test_dashboard_units.py tests/unit/dashboard/test_dashboard_filters.py tests/browser/test_dashboard_security.py tests/integration/test_dashboard_injection.py'
# The pipeline and the worker: the fast tests that drive them on a real redis-server. The real-process
# tests (tests/e2e/slack/test_pipeline_faults.py: lease renewal in a 20 s turn, the SIGTERM drain) guard
# them too but take minutes per mutant, so they are not run here.
FILE[pipeline]='bot/pipeline.py bot/store/inbox_entry.py'
GLOBS[pipeline]='bot.pipeline.* bot.store.inbox_entry.*'
TESTS[pipeline]='tests/unit/test_entry_encoding.py tests/unit/test_inbox_entry.py tests/integration/test_pipeline_refusals.py tests/integration/test_pipeline_stop.py tests/integration/test_concurrency.py tests/integration/test_pipeline_metrics.py tests/integration/test_recovery_pass.py tests/integration/test_redis_restart.py tests/integration/test_pending_case_next_event.py tests/e2e/discord/test_recovery.py'
FILE[worker]=bot/worker.py
GLOBS[worker]='bot.worker.*'
TESTS[worker]='tests/integration/test_recovery_pass.py tests/integration/test_pipeline_metrics.py tests/integration/test_pending_case_next_event.py tests/integration/test_redis_restart.py tests/e2e/slack/test_notices.py tests/e2e/discord/test_recovery.py'
FILE[review]='bot/review.py bot/moderation.py'
GLOBS[review]='bot.review.* bot.moderation.*'
TESTS[review]='tests/integration/test_review_desk.py tests/integration/test_moderation.py tests/integration/test_dashboard_access.py tests/integration/test_self_harm_cases_shown.py'
FILE[usage]='bot/usage.py bot/store/usage.py'
GLOBS[usage]='bot.usage.* bot.store.usage.*'
TESTS[usage]='tests/integration/test_usage.py'
# Log lines are not mutated in these four (their wording is no rule; that they carry no message text is
# checked by tests of their own): a statement starting with log.<level>( is left as it is.
for t in pipeline worker review usage; do SKIP[$t]='^\s*log\.(debug|info|warning|error|exception)\('; done
ALL=(policy history validation export escaping pipeline worker review usage lua)

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

toml_list() { local out="" x; for x in "$@"; do out+="\"$x\", "; done; echo "[${out%, }]"; }

summary=()
for target in "${targets[@]}"; do
  if [ "$target" = lua ]; then  # its own runner: a scratch copy per run, the store tests per mutant
    echo "== mutation: lua (hand-written mutants of the Lua in bot/store/)"
    mkdir -p "$BASE"
    start=$(date +%s)
    python3 scripts/lua_mutants.py >"$BASE/lua.txt" 2>&1 || { echo "lua mutants failed; see $BASE/lua.txt" >&2; exit 1; }
    seconds=$(( $(date +%s) - start ))
    line="$(grep '^lua: ' "$BASE/lua.txt") in ${seconds}s"$'\n'"$(grep '^   ' "$BASE/lua.txt" || true)"
    echo "${line%%$'\n'*}"
    summary+=("$line")
    continue
  fi
  [ -n "${FILE[$target]:-}" ] || { echo "unknown target: $target (one of: ${ALL[*]})" >&2; exit 2; }
  work="$BASE/$target"
  rm -rf "$work"; mkdir -p "$work"
  git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work"
  existing=()
  for t in ${TESTS[$target]}; do [ -e "$work/$t" ] && existing+=("$t"); done
  # shellcheck disable=SC2086
  cat >>"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["bot", "adapters", "config"]
only_mutate = $(toml_list ${FILE[$target]})
pytest_add_cli_args_test_selection = $(toml_list "${existing[@]}")
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "--timeout=60"]
use_git_change_detection = false
EOF
  if [ -n "${SKIP[$target]:-}" ]; then
    printf "do_not_mutate_patterns = ['%s']\n" "${SKIP[$target]}" >>"$work/pyproject.toml"
  fi
  echo "== mutation: $target (${FILE[$target]}) with ${existing[*]}"
  start=$(date +%s)
  # shellcheck disable=SC2086
  (cd "$work" && python3 -m mutmut run --max-children "$CHILDREN" ${GLOBS[$target]} >"$work/run.log" 2>&1) || {
    echo "mutmut failed for $target; see $work/run.log" >&2; tail -20 "$work/run.log" >&2; exit 1; }
  seconds=$(( $(date +%s) - start ))
  (cd "$work" && python3 -m mutmut results --all true >"$work/results.txt" 2>&1) || true
  line=$(python3 - "$work/results.txt" "$target" "$seconds" ${GLOBS[$target]} <<'PY'
import fnmatch, sys
path, target, seconds, globs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
counts: dict[str, int] = {}
survivors = []
for raw in open(path, encoding="utf-8"):
    name, _, status = raw.strip().rpartition(": ")
    if not name or not any(fnmatch.fnmatch(name, g) for g in globs):
        continue
    counts[status] = counts.get(status, 0) + 1
    if status in ("survived", "no tests", "timeout", "suspicious"):
        survivors.append(f"{name}: {status}")
total = sum(counts.values())
killed = counts.get("killed", 0)
score = 100.0 * killed / total if total else 0.0
print(f"{target}: {killed}/{total} killed ({score:.1f}%) in {seconds}s "
      + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
for s in survivors:
    print("   " + s)
PY
)
  echo "${line%%$'\n'*}"
  summary+=("$line")
done
echo
echo "== mutation scores"
printf '%s\n' "${summary[@]}"
