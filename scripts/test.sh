#!/usr/bin/env bash
# Runs the whole test suite: installs PostgreSQL if missing, starts a throw-away cluster, runs every test
# project against it, and removes the cluster afterwards. Extra arguments go to `dotnet test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh

ensure_postgres_installed
data=$(mktemp -d /tmp/transferapi-test-pg.XXXXXX)
chmod 755 "$data"
port=$(free_port 55433)
trap 'stop_cluster "$data/db"; rm -rf "$data"' EXIT
# fsync off: the cluster is thrown away after the run.
PG_FSYNC=off start_cluster "$data/db" "$port"
echo "PostgreSQL test cluster on 127.0.0.1:$port"

export TRANSFERAPI_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=postgres;Include Error Detail=true"
log="$data/test-output.log"
status=0
dotnet test TransferApi.sln -c Release --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" || status=$?
# One closing line over all test projects.
awk '/^ *Passed: *[0-9]+/ {p += $2} /^ *Failed: *[0-9]+/ {f += $2} /^ *Skipped: *[0-9]+/ {s += $2}
     END {printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$log"
exit "$status"
