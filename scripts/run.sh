#!/usr/bin/env bash
# Starts TransferApi with its PostgreSQL: installs PostgreSQL if missing, keeps a private cluster in
# .data/postgres (or $TRANSFERAPI_PG_DATA; port $TRANSFERAPI_PG_PORT, default 55432), applies migrations, and serves the API and a
# training worker on $TRANSFERAPI_URLS (default http://127.0.0.1:5080). Swagger UI: <url>/swagger. Prints the
# bootstrap admin key (made once, kept in .data/admin-key) that X-Api-Key needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh

port="${TRANSFERAPI_PG_PORT:-55432}"
urls="${TRANSFERAPI_URLS:-http://127.0.0.1:5080}"
data="${TRANSFERAPI_PG_DATA:-$PWD/.data/postgres}"

ensure_postgres_installed
start_cluster "$data" "$port"
echo "PostgreSQL on 127.0.0.1:$port (data in $data)"
"$(pg_bindir)/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'transferapi'" | grep -q 1 \
  || "$(pg_bindir)/createdb" -h 127.0.0.1 -p "$port" -U postgres transferapi

export ConnectionStrings__Postgres="${ConnectionStrings__Postgres:-Host=127.0.0.1;Port=$port;Username=postgres;Database=transferapi}"
export ASPNETCORE_ENVIRONMENT="${ASPNETCORE_ENVIRONMENT:-Development}"
# As in the container image: two glibc malloc arenas keep a worker's memory flat from job to job (docs/benchmarks.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# A bootstrap admin key for this machine, made once and kept beside the database (never in the repository).
key_file="$(dirname "$data")/admin-key"
if [[ -z "${Auth__BootstrapAdminKey:-}" ]]; then
  [[ -s "$key_file" ]] || (umask 077; echo "tak_dev_$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" > "$key_file")
  export Auth__BootstrapAdminKey="$(cat "$key_file")"
fi
# The key that encrypts the Data Protection key ring (webhook secrets), likewise made once and kept beside it.
secrets_key_file="$(dirname "$data")/secrets-key"
if [[ -z "${Secrets__KeyEncryptionKey:-}" ]]; then
  [[ -s "$secrets_key_file" ]] || (umask 077; head -c 32 /dev/urandom | base64 > "$secrets_key_file")
  export Secrets__KeyEncryptionKey="$(cat "$secrets_key_file")"
fi
echo "TransferApi on $urls (Swagger UI: $urls/swagger; admin key for X-Api-Key / Authorize: $Auth__BootstrapAdminKey, kept in $key_file)"
exec dotnet run --project src/TransferApi -c Release -- --urls "$urls"
