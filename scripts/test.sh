#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/lib/chromium/chromium ] || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"; python3 -m ruff check bot adapters config tools tests bench
echo "== mypy"; python3 -m mypy
# The product's tests, then (on a line of their own) the checks of the stand-ins and test servers.
# Both always run; the script fails if either fails. A `-m EXPR` given here applies to both.
marks=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "-m" ] && [ $((i + 1)) -lt ${#args[@]} ]; then marks=(-m "${args[$((i + 1))]}"); fi
done
echo "== pytest: threadguard"
product=0; python3 -m pytest -q -p no:cacheprovider --ignore=tests/support_checks "$@" || product=$?
echo "== pytest: stand-in checks (tests/support_checks: the test servers and stand-ins, not threadguard)"
standins=0; python3 -m pytest -q -p no:cacheprovider "${marks[@]}" tests/support_checks || standins=$?
[ "$standins" -eq 5 ] && standins=0   # nothing selected by the marks given
[ "$product" -ne 0 ] && exit "$product"
exit "$standins"
