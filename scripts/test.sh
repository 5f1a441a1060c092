#!/usr/bin/env bash
# Runs the whole test suite: installs PostgreSQL if missing, starts a throw-away cluster, runs every test
# project against it, and removes the cluster afterwards. Extra arguments go to `dotnet test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh

run_tests() {
  local log status=0
  log=$(mktemp /tmp/transferapi-test-output.XXXXXX)
  dotnet test TransferApi.sln -c Release --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" || status=$?
  # One closing line over all test projects.
  awk '/^ *Passed: *[0-9]+/ {p += $2} /^ *Failed: *[0-9]+/ {f += $2} /^ *Skipped: *[0-9]+/ {s += $2}
       END {printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$log"
  rm -f "$log"
  return "$status"
}

with_throwaway_cluster run_tests "$@"
